"""Evaluation metrics as pure functions: Frechet distance, precision/recall/density/coverage, representation,
disentanglement, linear probes; feature extraction (orbax checkpoints, Inception) for FD. The disentanglement
metrics and probes (scikit-learn) and the feature extractors (orbax) load lazily (`jaxrep._lazy`), on first use."""

from jaxrep._lazy import lazy_exports
from jaxrep.metrics.convergence import bootstrap_mean_ci, steps_to_reach
from jaxrep.metrics.frechet import FeatureStatistics, frechet_distance, load_statistics, save_statistics, statistics
from jaxrep.metrics.prdc import prdc
from jaxrep.metrics.representation import (
    correlation_decay_slope,
    effective_rank,
    linear_cka,
    local_distant_similarity,
    srank,
)

_LAZY = {
    "disentanglement": ("dci", "dci_scores", "mig", "mutual_information_matrix", "variation_predictability"),
    "probe": ("linear_probe_accuracy",),
    "features": ("FeatureExtractor", "FeatureSet", "cached_reference_features", "eval_net_extractor",
                 "extract_features", "inception_extractor", "load_eval_net", "load_feature_extractor",
                 "load_feature_set", "save_eval_net", "save_feature_set"),
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = sorted(["FeatureStatistics", "bootstrap_mean_ci", "correlation_decay_slope", "effective_rank",
                  "frechet_distance", "linear_cka", "load_statistics", "local_distant_similarity", "prdc",
                  "save_statistics", "srank", "statistics", "steps_to_reach",
                  *(name for names in _LAZY.values() for name in names)])

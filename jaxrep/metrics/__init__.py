"""Evaluation metrics as pure functions: Frechet distance, precision/recall/density/coverage, representation,
disentanglement, linear probes. The disentanglement metrics and probes (scikit-learn) load lazily (`jaxrep._lazy`),
on first use. Feature extraction for FD (Inception, the eval net, cached reference features) is
`jaxrep.weights.features`."""

from jaxrep._lazy import lazy_exports
from jaxrep.metrics.convergence import bootstrap_mean_ci, steps_to_reach
from jaxrep.metrics.frechet import FeatureStatistics, frechet_distance, statistics
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
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = sorted(["FeatureStatistics", "bootstrap_mean_ci", "correlation_decay_slope", "effective_rank",
                  "frechet_distance", "linear_cka", "local_distant_similarity", "prdc", "srank", "statistics",
                  "steps_to_reach",
                  *(name for names in _LAZY.values() for name in names)])

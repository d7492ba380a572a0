"""Evaluation metrics as pure functions: Frechet distance, precision/recall/density/coverage, representation."""

from jaxrep.metrics.disentanglement import (
    dci,
    dci_scores,
    mig,
    mutual_information_matrix,
    variation_predictability,
)
from jaxrep.metrics.frechet import FeatureStatistics, frechet_distance, load_statistics, save_statistics, statistics
from jaxrep.metrics.prdc import prdc
from jaxrep.metrics.representation import (
    correlation_decay_slope,
    effective_rank,
    linear_cka,
    local_distant_similarity,
    srank,
)
from jaxrep.metrics.features import (
    FeatureExtractor,
    FeatureSet,
    cached_reference_features,
    eval_net_extractor,
    extract_features,
    inception_extractor,
    load_eval_net,
    load_feature_extractor,
    load_feature_set,
    save_eval_net,
    save_feature_set,
)

__all__ = [
    "FeatureStatistics",
    "correlation_decay_slope",
    "dci",
    "dci_scores",
    "effective_rank",
    "frechet_distance",
    "linear_cka",
    "load_statistics",
    "local_distant_similarity",
    "mig",
    "mutual_information_matrix",
    "prdc",
    "save_statistics",
    "srank",
    "statistics",
    "variation_predictability",
    "FeatureExtractor",
    "FeatureSet",
    "cached_reference_features",
    "eval_net_extractor",
    "extract_features",
    "inception_extractor",
    "load_eval_net",
    "load_feature_extractor",
    "load_feature_set",
    "save_eval_net",
    "save_feature_set",
]

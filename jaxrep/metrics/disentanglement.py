"""Disentanglement metrics on host arrays (numpy + scikit-learn): MIG, DCI, variation predictability.

These fit small estimators (histograms, gradient-boosted trees, Lasso, logistic regression) on encoded
codes, so they run on the host in numpy, not under `jax.jit`. Inputs are array-likes (JAX arrays are fine).

MIG (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs"):
    MIG = (1/F) sum_k (I(z_{j_k}; v_k) - max_{j != j_k} I(z_j; v_k)) / H(v_k),  j_k = argmax_j I(z_j; v_k),
  with the discrete estimator of disentanglement_lib (Locatello et al. 2019): each code dimension is
  histogrammed into `num_bins` equal-width bins and I is the plug-in mutual information of the counts.

DCI (Eastwood & Williams 2018, "A Framework for the Quantitative Evaluation of Disentangled Representations"):
  one predictor per factor gives an importance matrix R (L codes x F factors); with P_ij = R_ij / sum_k R_ik,
    D = sum_i rho_i (1 - H_F(P_i.)),  rho_i = sum_j R_ij / sum R       (disentanglement, entropy base F)
    C = sum_j w_j (1 - H_L(R_.j / sum_i R_ij)),  w_j = sum_i R_ij / sum R  (completeness, entropy base L)
  (factors weighted by importance as in disentanglement_lib; with "gbt" every column sums to 1, so w_j = 1/F)
    I = held-out accuracy (trees) or R^2 (Lasso), averaged over factors   (informativeness; higher is better)
  Estimators: "gbt", scikit-learn's GradientBoostingClassifier per factor with its impurity importances
  (disentanglement_lib's choice); "lasso", Lasso on standardised codes and factors with |coefficients| as
  importances (the paper's linear choice, alpha fixed rather than cross-validated). Lasso zeroes weak
  coefficients, so on uninformative codes its D and C are unreliable (few surviving entries look "sparse");
  prefer "gbt" for comparisons.

VP, variation predictability (Zhu, Xu & Tao, ECCV 2020, "Learning Disentangled Representations with Latent
Variation Predictability"): pairs (x1, x2) that differ by one traversal k; a classifier predicts k from
the difference x2 - x1, trained on a small share of the pairs (the reference `run_vp.py` uses test ratio 0.9)
and tested on the rest; VP = its test accuracy averaged over folds. The reference trains a small ConvNet and
keeps the best validation epoch; here the default classifier is multinomial logistic regression (any
scikit-learn classifier can be passed), evaluated once per fold.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import base, ensemble, linear_model, metrics

ESTIMATORS = ("gbt", "lasso")


def _as_2d(x: Any, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be (N, dims), got shape {x.shape}")
    return x


def discretize(codes: Any, num_bins: int = 20) -> np.ndarray:
    """Bins each column of codes (N, L) into `num_bins` equal-width bins over its range -> int (N, L)."""
    codes = _as_2d(codes, "codes").astype(np.float64)
    binned = np.zeros(codes.shape, np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], bins=num_bins)[1]
        binned[:, j] = np.digitize(codes[:, j], edges[1:-1])
    return binned


def mutual_information_matrix(codes: Any, factors: Any, num_bins: int = 20) -> np.ndarray:
    """Plug-in I(z_j; v_k) in nats between discretised codes (N, L) and discrete factors (N, F) -> (L, F)."""
    binned = discretize(codes, num_bins)
    factors = _as_2d(factors, "factors")
    if factors.shape[0] != binned.shape[0]:
        raise ValueError(f"codes and factors disagree on N: {binned.shape[0]} vs {factors.shape[0]}")
    return np.array([[metrics.mutual_info_score(factors[:, k], binned[:, j]) for k in range(factors.shape[1])]
                     for j in range(binned.shape[1])])


def mig(codes: Any, factors: Any, *, num_bins: int = 20) -> float:
    """Mutual information gap in [0, 1]: codes (N, L) with L >= 2, discrete factors (N, F).

    Constant factors (zero entropy, e.g. dSprites' colour) carry no information and are skipped.
    """
    factors = _as_2d(factors, "factors")
    mutual_information = mutual_information_matrix(codes, factors, num_bins)
    if mutual_information.shape[0] < 2:
        raise ValueError("MIG needs at least two code dimensions")
    entropy = np.array([metrics.mutual_info_score(factors[:, k], factors[:, k]) for k in range(factors.shape[1])])
    varying = entropy > 0
    if not varying.any():
        raise ValueError("every factor is constant; MIG is undefined")
    top_two = np.sort(mutual_information, axis=0)[::-1][:2]
    return float(np.mean((top_two[0] - top_two[1])[varying] / entropy[varying]))


def _entropy(p: np.ndarray, base_size: int, axis: int) -> np.ndarray:
    """Entropy with log base `base_size` of the normalised non-negative weights p along `axis`."""
    total = p.sum(axis=axis, keepdims=True)
    q = np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / p.shape[axis])
    logs = np.where(q > 0, np.log(np.where(q > 0, q, 1.0)), 0.0)
    return -np.sum(q * logs, axis=axis) / np.log(base_size)


def dci_scores(importance: Any) -> tuple[float, float]:
    """(disentanglement, completeness) of an importance matrix (L codes, F factors), L, F >= 2.

    Codes and factors without importance get weight 0; an all-zero matrix scores (0, 0).
    """
    importance = np.abs(_as_2d(importance, "importance")).astype(np.float64)
    num_codes, num_factors = importance.shape
    if num_codes < 2 or num_factors < 2:
        raise ValueError(f"DCI needs at least two codes and two factors, got {importance.shape}")
    total = importance.sum()
    if total == 0:
        return 0.0, 0.0
    per_code = 1.0 - _entropy(importance, num_factors, axis=1)
    disentanglement = float(np.sum(per_code * importance.sum(axis=1) / total))
    per_factor = 1.0 - _entropy(importance, num_codes, axis=0)
    completeness = float(np.sum(per_factor * importance.sum(axis=0) / total))
    return disentanglement, completeness


def dci(codes: Any, factors: Any, *, estimator: str = "gbt", test_fraction: float = 0.2, seed: int = 0,
        num_trees: int = 100, lasso_alpha: float = 0.02) -> dict[str, Any]:
    """DCI of codes (N, L) against factors (N, F) on a random train/test split of the N samples.

    Args:
      codes: (N, L) representations (e.g. posterior means).
      factors: (N, F) ground-truth factors; integer classes for "gbt".
      estimator: "gbt" or "lasso" (module docstring).
      test_fraction: share of samples held out for informativeness.
      seed: split and estimator seed.
      num_trees: boosting stages of "gbt" (scikit-learn's default 100; each stage fits one tree per class).
      lasso_alpha: L1 weight of "lasso", on standardised variables.
    Returns:
      {"disentanglement", "completeness", "informativeness": floats, "importance": (L, F) array}.
    """
    codes = _as_2d(codes, "codes").astype(np.float64)
    factors = _as_2d(factors, "factors")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    order = np.random.default_rng(seed).permutation(codes.shape[0])
    num_test = max(1, int(round(test_fraction * codes.shape[0])))
    test, train = order[:num_test], order[num_test:]
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    informativeness = []
    if estimator == "lasso":
        mean, std = codes[train].mean(0), codes[train].std(0) + 1e-12
        codes = (codes - mean) / std
    for k in range(factors.shape[1]):
        target = factors[:, k]
        if estimator == "gbt":
            model = ensemble.GradientBoostingClassifier(n_estimators=num_trees, random_state=seed)
            model.fit(codes[train], target[train])
            importance[:, k] = model.feature_importances_
            informativeness.append(model.score(codes[test], target[test]))
        else:
            target = target.astype(np.float64)
            target = (target - target[train].mean()) / (target[train].std() + 1e-12)
            model = linear_model.Lasso(alpha=lasso_alpha, random_state=seed).fit(codes[train], target[train])
            importance[:, k] = np.abs(model.coef_)
            informativeness.append(model.score(codes[test], target[test]))
    disentanglement, completeness = dci_scores(importance)
    return {"disentanglement": disentanglement, "completeness": completeness,
            "informativeness": float(np.mean(informativeness)), "importance": importance}


def variation_predictability(first: Any, second: Any, labels: Any, *, test_fraction: float = 0.9,
                             num_folds: int = 3, seed: int = 0, classifier: Any = None) -> float:
    """VP: held-out accuracy of predicting the traversal label from x2 - x1, averaged over folds.

    Args:
      first, second: (N, ...) the two images of each pair (any trailing shape).
      labels: (N,) the traversal (potential / direction) index of each pair.
      test_fraction: share held out per fold (0.9 in the reference, i.e. train on 10%).
      num_folds: folds; their test windows are evenly shifted around one seeded permutation.
      seed: permutation seed.
      classifier: an unfitted scikit-learn classifier, cloned per fold; None is multinomial logistic
        regression.
    Returns:
      Mean test accuracy in [0, 1]; chance is 1 / number of labels.
    """
    first, second, labels = np.asarray(first), np.asarray(second), np.asarray(labels)
    if first.shape != second.shape or labels.shape != first.shape[:1]:
        raise ValueError(f"need first, second (N, ...) and labels (N,); got {first.shape}, {second.shape}, "
                         f"{labels.shape}")
    difference = (second.astype(np.float64) - first.astype(np.float64)).reshape(first.shape[0], -1)
    count = difference.shape[0]
    num_test = int(round(test_fraction * count))
    if not 0 < num_test < count:
        raise ValueError(f"test_fraction {test_fraction} leaves no train or no test pairs out of {count}")
    classifier = classifier if classifier is not None else linear_model.LogisticRegression(max_iter=2000)
    order = np.random.default_rng(seed).permutation(count)
    accuracies = []
    for fold in range(num_folds):
        rolled = np.roll(order, -(fold * count // num_folds))
        test, train = rolled[:num_test], rolled[num_test:]
        model = base.clone(classifier).fit(difference[train], labels[train])
        accuracies.append(model.score(difference[test], labels[test]))
    return float(np.mean(accuracies))

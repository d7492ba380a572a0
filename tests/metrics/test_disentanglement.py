"""MIG, DCI and VP on synthetic codes whose answers are known.

Factors are independent uniform classes. A code that copies the factors (up to permutation, scale, a
monotone map and small noise) is perfectly disentangled: MIG, D, C, I near 1. Random codes carry no
information: MIG, D, C near 0 and informativeness at chance.
"""

import numpy as np
import pytest

from jaxrep.metrics.disentanglement import dci, dci_scores, mig, mutual_information_matrix, variation_predictability

SIZES = (3, 4, 6)


def factors(count, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, size, count) for size in SIZES], axis=1)


def faithful_codes(f, seed=1):
    """Permuted, rescaled, monotonically warped copy of the factors with small noise, plus one dead dimension."""
    rng = np.random.default_rng(seed)
    warped = np.stack([np.exp(0.3 * f[:, 2]), -2.0 * f[:, 0], 0.5 * f[:, 1]], axis=1)
    codes = np.concatenate([warped, np.zeros((len(f), 1))], axis=1)
    return codes + 1e-3 * rng.normal(size=codes.shape)


def test_mig_extremes():
    f = factors(2000)
    assert mig(faithful_codes(f), f) > 0.95
    assert mig(np.random.default_rng(2).normal(size=(2000, 4)), f) < 0.05


def test_mig_is_zero_when_a_factor_is_copied_twice():
    f = factors(2000)
    codes = np.stack([f[:, 0], f[:, 0] + 1e-3, f[:, 1], f[:, 2]], axis=1).astype(float)
    info = mutual_information_matrix(codes, f)
    np.testing.assert_allclose(info[0, 0], info[1, 0], rtol=1e-6)
    # Factor 0 has no gap, factors 1 and 2 have the full one: MIG = 2/3.
    np.testing.assert_allclose(mig(codes, f), 2 / 3, atol=0.02)


def test_mig_skips_constant_factors_and_rejects_bad_input():
    f = factors(1000)
    with_constant = np.concatenate([f, np.zeros((1000, 1), int)], axis=1)
    np.testing.assert_allclose(mig(faithful_codes(f), with_constant), mig(faithful_codes(f), f))
    with pytest.raises(ValueError, match="two code"):
        mig(f[:, :1].astype(float), f)


def test_dci_scores_of_known_importance_matrices():
    np.testing.assert_allclose(dci_scores(np.eye(3)), (1.0, 1.0), atol=1e-12)
    np.testing.assert_allclose(dci_scores(np.ones((3, 3))), (0.0, 0.0), atol=1e-12)
    # One code explains both factors equally: not disentangled, but complete.
    np.testing.assert_allclose(dci_scores(np.array([[1.0, 1.0], [0.0, 0.0]])), (0.0, 1.0), atol=1e-12)
    # Each factor split evenly over two codes that are each specific: disentangled, half complete.
    split = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(dci_scores(split), (1.0, 1.0 - np.log(2) / np.log(4)), atol=1e-12)
    assert dci_scores(np.zeros((2, 2))) == (0.0, 0.0)


def test_dci_gradient_boosted_trees():
    f = factors(400)
    good = dci(faithful_codes(f), f, num_trees=30)
    assert good["disentanglement"] > 0.95 and good["completeness"] > 0.95 and good["informativeness"] > 0.95
    assert good["importance"].shape == (4, 3)
    assert np.argmax(good["importance"][:, 0]) == 1  # factor 0 lives in code 1
    noise = dci(np.random.default_rng(3).normal(size=(400, 3)), f, num_trees=30)
    assert noise["disentanglement"] < 0.1 and noise["completeness"] < 0.1
    assert noise["informativeness"] < np.mean([1 / s for s in SIZES]) + 0.1


def test_dci_lasso():
    f = factors(1000)
    codes = f[:, [2, 0, 1]] * np.array([1.0, -2.0, 0.5]) + 1e-3 * np.random.default_rng(4).normal(size=(1000, 3))
    good = dci(codes, f, estimator="lasso")
    assert good["disentanglement"] > 0.95 and good["completeness"] > 0.95 and good["informativeness"] > 0.95
    with pytest.raises(ValueError, match="estimator"):
        dci(codes, f, estimator="forest")


def test_variation_predictability():
    """Pairs whose difference is a bump at a label-specific place are predictable; shuffled labels are not."""
    rng = np.random.default_rng(5)
    count, num_labels = 300, 3
    labels = rng.integers(0, num_labels, count)
    first = rng.uniform(size=(count, 8, 8, 1))
    second = first.copy()
    for i, label in enumerate(labels):
        second[i, 2 * label:2 * label + 2, :, 0] += 1.0
    second += 0.1 * rng.normal(size=second.shape)
    assert variation_predictability(first, second, labels, test_fraction=0.8) > 0.95
    shuffled = variation_predictability(first, second, rng.permutation(labels), test_fraction=0.8)
    assert shuffled < 1 / num_labels + 0.15
    with pytest.raises(ValueError, match="labels"):
        variation_predictability(first, second, labels[:-1])

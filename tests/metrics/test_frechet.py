"""Frechet distance against closed forms and a scipy.linalg.sqrtm reference; streaming statistics against np.cov."""

import numpy as np
import pytest
import scipy.linalg

from jaxrep.metrics import FeatureStatistics, frechet_distance, statistics
from jaxrep.weights.features import load_statistics, save_statistics


def _random_statistics(rng, dim, num_samples):
    features = rng.normal(size=(num_samples, dim)) @ rng.normal(size=(dim, dim)) + rng.normal(size=dim)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrtm_frechet_distance(mu1, sigma1, mu2, sigma2):
    """pytorch-fid's formula without its eps fallback: trace of scipy's sqrtm of the non-symmetric product."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)


def test_commuting_diagonal_closed_form():
    a, b = np.array([1.0, 4.0, 0.25, 9.0]), np.array([4.0, 1.0, 1.0, 0.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # 5 + (1 + 1 + 0.25 + 9)
    assert expected == pytest.approx(16.25)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_non_commuting_2x2_closed_form():
    # For 2x2 M with eigenvalues l1, l2 >= 0: tr sqrt(M) = sqrt(l1) + sqrt(l2) = sqrt(tr M + 2 sqrt(det M)).
    # S1 S2 = [[2, 4], [1, 8]]: tr = 10, det = det S1 det S2 = 3 * 4 = 12, so tr sqrt = sqrt(10 + 4 sqrt(3)).
    sigma1 = np.array([[2.0, 1.0], [1.0, 2.0]])
    sigma2 = np.array([[1.0, 0.0], [0.0, 4.0]])
    assert not np.allclose(sigma1 @ sigma2, sigma2 @ sigma1)
    mu1, mu2 = np.array([1.0, -1.0]), np.array([0.0, 1.0])
    expected = 5.0 + 4.0 + 5.0 - 2.0 * np.sqrt(10.0 + 4.0 * np.sqrt(3.0))
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dim", [3, 16, 64])
def test_agrees_with_scipy_sqrtm(dim):
    rng = np.random.default_rng(dim)
    mu1, sigma1 = _random_statistics(rng, dim, 4 * dim)
    mu2, sigma2 = _random_statistics(rng, dim, 4 * dim)
    ours = frechet_distance(mu1, sigma1, mu2, sigma2)
    assert ours == pytest.approx(_sqrtm_frechet_distance(mu1, sigma1, mu2, sigma2), rel=1e-6)
    assert ours == pytest.approx(frechet_distance(mu2, sigma2, mu1, sigma1), rel=1e-10)


def test_zero_for_identical_statistics_even_when_singular():
    rng = np.random.default_rng(0)
    mu, sigma = _random_statistics(rng, 32, 64)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-12 * np.trace(sigma))
    # Fewer samples than dimensions: rank-deficient covariance. The square root turns rounding noise eps in the
    # null eigenvalues into sqrt(eps), so the error is O(sqrt(machine eps) * trace), not O(eps * trace).
    features = rng.normal(size=(10, 32))
    mu, sigma = statistics(features)
    assert np.linalg.matrix_rank(sigma) == 9
    singular_fd = frechet_distance(mu, sigma, mu, sigma)
    assert np.isfinite(singular_fd)
    assert singular_fd == pytest.approx(0.0, abs=1e-7 * np.trace(sigma))


def test_accepts_float32_and_shape_mismatch_raises():
    mu, sigma = np.zeros(3, np.float32), np.eye(3, dtype=np.float32)
    assert frechet_distance(mu, sigma, mu + 1, 4 * sigma) == pytest.approx(3.0 + 3.0)  # |1|^2*3 + 3 (2-1)^2
    with pytest.raises(AssertionError, match=r"different shapes: \[\(3,\), \(4,\)\]"):
        frechet_distance(mu, sigma, np.zeros(4), np.eye(4))


def test_streaming_statistics_match_numpy_on_uneven_chunks():
    rng = np.random.default_rng(1)
    # A large common offset: a raw sum-of-outer-products accumulator would cancel catastrophically here.
    features = 1e4 + rng.normal(size=(100, 12)) @ rng.normal(size=(12, 12))
    stats = FeatureStatistics.empty(12)
    for chunk in np.split(features, [1, 8, 38, 40, 40]):  # includes an empty chunk
        stats = stats.update(chunk.astype(np.float64))
    assert stats.count == 100
    np.testing.assert_allclose(stats.mean, features.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(stats.covariance, np.cov(features, rowvar=False), rtol=1e-9)


def test_merge_equals_single_pass_and_update_is_pure():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(50, 5))
    empty = FeatureStatistics.empty(5)
    left, right = empty.update(features[:17]), empty.update(features[17:])
    merged = left.merge(right)
    assert empty.count == 0 and left.count == 17
    mu, sigma = statistics(features)
    np.testing.assert_allclose(merged.mean, mu, rtol=1e-12)
    np.testing.assert_allclose(merged.covariance, sigma, rtol=1e-12)
    with pytest.raises(ValueError, match="^covariance: needs at least 2 features, have 1"):
        empty.update(features[:1]).covariance


def test_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(3)
    mu, sigma = _random_statistics(rng, 6, 20)
    path = tmp_path / "stats.npz"
    save_statistics(path, mu, sigma)
    with np.load(path) as data:
        assert sorted(data.files) == ["mu", "sigma"]
    loaded_mu, loaded_sigma = load_statistics(path)
    np.testing.assert_array_equal(loaded_mu, mu)
    np.testing.assert_array_equal(loaded_sigma, sigma)

"""Precision/recall/density/coverage on point sets with hand-computed answers, and blocked vs unblocked."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from jaxrep.metrics import prdc


def _reference_prdc(real, fake, k):
    """Naeem et al.'s `prdc.compute_prdc`, with full distance matrices (float64)."""
    real_radii = np.sort(cdist(real, real), axis=1)[:, k]  # column 0 is the self-distance
    fake_radii = np.sort(cdist(fake, fake), axis=1)[:, k]
    distances = cdist(real, fake)
    in_real_ball = distances < real_radii[:, None]
    return {
        "precision": in_real_ball.any(axis=0).mean(),
        "recall": (distances < fake_radii[None, :]).any(axis=1).mean(),
        "density": in_real_ball.sum(axis=0).mean() / k,
        "coverage": (distances.min(axis=1) < real_radii).mean(),
    }


def test_hand_computed_1d_example():
    # k = 2. Real radii (2nd neighbour): 0->3, 1->2, 3->3, 20->2, 21->1, 22->2.
    # Fake radii: 1.5->2.0, 2.9->1.4, 3.5->2.0, 7->4.1.
    # precision: 1.5, 2.9 in ball(0); 3.5 in ball(3); 7 in none -> 3/4.
    # recall: 0, 1 within 1.5's radius; 3 within 2.9's; 20, 21, 22 in no fake ball -> 3/6.
    # density: ball(0) holds {1.5, 2.9}, ball(1) {1.5, 2.9}, ball(3) {1.5, 2.9, 3.5}, others none -> 7 / (2 * 4).
    # coverage: nearest fakes of 0, 1, 3 lie inside their radii; 20, 21, 22 are 13+ from 7 -> 3/6.
    real = np.array([0.0, 1.0, 3.0, 20.0, 21.0, 22.0])[:, None]
    fake = np.array([1.5, 2.9, 3.5, 7.0])[:, None]
    expected = {"precision": 0.75, "recall": 0.5, "density": 0.875, "coverage": 0.5}
    assert prdc(real, fake, k=2) == pytest.approx(expected)
    assert _reference_prdc(real, fake, k=2) == pytest.approx(expected)


def test_identical_sets():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(64, 8))
    result = prdc(features, features, k=3, batch_size=16)
    assert result["precision"] == 1.0
    assert result["recall"] == 1.0
    assert result["coverage"] == 1.0
    # Each sample lies in its own ball and those of the points that count it among their 3 nearest neighbours.
    assert result["density"] == pytest.approx(_reference_prdc(features, features, k=3)["density"])


def test_far_apart_clusters_score_zero():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(40, 4))
    fake = rng.normal(size=(30, 4)) + 100.0
    assert prdc(real, fake, k=5) == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


@pytest.mark.parametrize("batch_size", [1, 7, 32, 1000])
def test_blocked_equals_unblocked_reference(batch_size):
    rng = np.random.default_rng(2)
    real = rng.normal(size=(90, 16)).astype(np.float32)
    fake = (0.8 * rng.normal(size=(70, 16)) + 0.3).astype(np.float32)
    result = prdc(real, fake, k=5, batch_size=batch_size)
    assert result == pytest.approx(_reference_prdc(real.astype(np.float64), fake.astype(np.float64), k=5))
    assert 0.0 < result["precision"] < 1.0 and 0.0 < result["recall"] < 1.0


def test_rejects_too_few_samples():
    with pytest.raises(ValueError, match=r"^prdc: need more than k=5 samples per set, got 5 real, 10 fake"):
        prdc(np.zeros((5, 2)), np.zeros((10, 2)), k=5)

"""Linear probe: separable labels are read out exactly, labels independent of the features are not, and the
read-out does not depend on the features' scale (they are standardised)."""

import numpy as np
import pytest

from jaxrep.metrics import linear_probe_accuracy


def _blobs(rng, n, centres):
    labels = rng.integers(0, len(centres), n)
    return centres[labels] + 0.1 * rng.standard_normal((n, centres.shape[1])), labels


def test_separable_classes_are_probed_exactly_and_noise_labels_at_chance():
    rng = np.random.default_rng(0)
    centres = 3.0 * np.eye(4, 16)
    (train_x, train_y), (test_x, test_y) = _blobs(rng, 400, centres), _blobs(rng, 400, centres)
    assert linear_probe_accuracy(train_x, train_y, test_x, test_y) == 1.0
    shuffled = rng.permutation(test_y)  # labels that no longer depend on the features
    assert abs(linear_probe_accuracy(train_x, train_y, test_x, shuffled) - 0.25) < 0.08


def test_feature_scale_does_not_matter_and_shapes_are_checked():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((3, 8))
    (train_x, train_y), (test_x, test_y) = _blobs(rng, 300, centres), _blobs(rng, 300, centres)
    scale = np.geomspace(1e-3, 1e3, 8)
    assert linear_probe_accuracy(train_x, train_y, test_x, test_y) == pytest.approx(
        linear_probe_accuracy(train_x * scale, train_y, test_x * scale, test_y), abs=1e-9)
    with pytest.raises(ValueError, match=r"\(N, D\) and \(M, D\)"):
        linear_probe_accuracy(train_x, train_y, test_x[:, :4], test_y)

"""jaxrep.supervised: the factor-classification and patch-coverage losses against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.supervised import coverage_loss, factor_classification_loss, patch_coverage


def numpy_cross_entropy(logits, labels):
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]


def test_factor_classification_loss_per_image_matches_numpy():
    rng = np.random.default_rng(0)
    logits = [rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(6, 5)).astype(np.float32)]
    factors = np.stack([rng.integers(0, 3, 6), rng.integers(0, 5, 6)], axis=1).astype(np.int32)
    loss, accuracies = jax.jit(factor_classification_loss)(logits, factors)
    expected = np.mean([numpy_cross_entropy(l, factors[:, f]).mean() for f, l in enumerate(logits)])
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(accuracies, [np.mean(l.argmax(-1) == factors[:, f]) for f, l in enumerate(logits)])


def test_factor_classification_loss_per_token_shares_the_image_labels():
    rng = np.random.default_rng(1)
    logits = [rng.normal(size=(4, 7, 3)).astype(np.float32)]
    factors = rng.integers(0, 3, (4, 1)).astype(np.int32)
    loss, accuracies = factor_classification_loss(logits, factors)
    token_labels = np.broadcast_to(factors, (4, 7))
    np.testing.assert_allclose(loss, numpy_cross_entropy(logits[0], token_labels).mean(), rtol=1e-5)
    np.testing.assert_allclose(accuracies, [np.mean(logits[0].mean(1).argmax(-1) == factors[:, 0])])


def test_uniform_logits_give_log_class_counts():
    logits = [jnp.zeros((2, 3)), jnp.zeros((2, 4))]
    loss, _ = factor_classification_loss(logits, jnp.zeros((2, 2), jnp.int32))
    np.testing.assert_allclose(loss, np.mean(np.log([3, 4])), rtol=1e-6)


def test_patch_coverage_matches_numpy():
    image = -np.ones((1, 8, 8, 3), np.float32)
    image[0, :2, :2] = 1.0  # the whole top-left 2x2 cell (of a 4x4 grid of 2x2 cells)
    image[0, 4, 6, 1] = 0.0  # one pixel of cell (2, 3), green at half intensity
    coverage = np.asarray(patch_coverage(jnp.asarray(image), 4)).reshape(4, 4)
    expected = np.zeros((4, 4))
    expected[0, 0], expected[2, 3] = 1.0, 0.25
    np.testing.assert_allclose(coverage, expected)


def test_coverage_loss_is_the_soft_target_sigmoid_cross_entropy():
    rng = np.random.default_rng(2)
    images = np.where(rng.random((2, 8, 8, 1)) > 0.7, 1.0, -1.0).astype(np.float32)
    logits = rng.normal(size=(2, 16)).astype(np.float32)
    targets = np.asarray(patch_coverage(jnp.asarray(images), 4))
    probs = 1.0 / (1.0 + np.exp(-logits))
    expected = -np.mean(targets * np.log(probs) + (1 - targets) * np.log(1 - probs))
    np.testing.assert_allclose(coverage_loss(logits, images), expected, rtol=1e-5)

"""Supervised losses on ground-truth factors of the procedural data, shared by the in-repo target encoder
(`train.encoder`, per-token heads on a ViT) and the evaluation network (`train.eval_net`, `jaxrep.nn.eval_net`).

For F factors with K_f classes each and integer labels y_f (B,):

    L_factor   = (1/F) sum_f mean_{B[,N]} CE(logits_f, y_f)         per-image (B, K_f) or per-token (B, N, K_f)
    acc_f      = mean_B [argmax_k mean_N logits_f = y_f]             token logits averaged before the argmax
    L_coverage = mean_{B,N} BCE(sigmoid(c), cover(x))               cover: the object's share of each patch

In the per-token form every token of an image is given the image's labels.
"""

from __future__ import annotations

from typing import Sequence

import chex
import jax
import jax.numpy as jnp
import optax

__all__ = ["FOREGROUND_THRESHOLD", "coverage_loss", "coverage_loss_per_example", "factor_classification_loss",
           "factor_classification_loss_per_example", "patch_coverage"]

# Pixels brighter than this (in [0, 1], max over channels) count as the object; the background is black.
FOREGROUND_THRESHOLD = 0.05


def _factor_terms(logits: Sequence[jax.Array], factors: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy per image and factor (B, F) (a per-token head: mean over its tokens) and per-image
    correctness (B, F) of the image's (token-averaged) logits."""
    chex.assert_rank(factors, 2)
    chex.assert_axis_dimension(factors, 1, len(logits))
    losses, correct = [], []
    for index, factor_logits in enumerate(logits):
        labels = factors[:, index]
        if factor_logits.ndim == 3:
            token_labels = jnp.broadcast_to(labels[:, None], factor_logits.shape[:2])
            losses.append(optax.softmax_cross_entropy_with_integer_labels(factor_logits, token_labels).mean(axis=1))
            factor_logits = factor_logits.mean(axis=1)
        else:
            chex.assert_rank(factor_logits, 2)
            losses.append(optax.softmax_cross_entropy_with_integer_labels(factor_logits, labels))
        correct.append(jnp.argmax(factor_logits, -1) == labels)
    return jnp.stack(losses, axis=1), jnp.stack(correct, axis=1)


def factor_classification_loss_per_example(logits: Sequence[jax.Array], factors: jax.Array) -> jax.Array:
    """L_factor per image, (B,): the mean over factors of the cross-entropy (shapes as in
    `factor_classification_loss`)."""
    return _factor_terms(logits, factors)[0].mean(axis=1)


def factor_classification_loss(logits: Sequence[jax.Array], factors: jax.Array) -> tuple[jax.Array, jax.Array]:
    """L_factor and the per-factor accuracies (module docstring).

    Args:
      logits: one array per factor f, (B, K_f) per image or (B, N, K_f) per token (labels shared by the tokens).
      factors: (B, F) integer labels.
    Returns:
      loss: scalar, the mean over factors of the batch-mean cross-entropy; accuracies: (F,).
    """
    losses, correct = _factor_terms(logits, factors)
    return jnp.mean(losses), jnp.mean(correct, axis=0)


def patch_coverage(images: jax.Array, grid: int) -> jax.Array:
    """Fraction of each of the grid x grid patches covered by the object.

    images: (B, H, W, C) in [-1, 1]; returns (B, grid^2), patches row-major like the ViT tokens.
    """
    foreground = (jnp.max((images + 1.0) * 0.5, axis=-1) > FOREGROUND_THRESHOLD).astype(jnp.float32)
    batch, height, width = foreground.shape
    cells = foreground.reshape(batch, grid, height // grid, grid, width // grid)
    return cells.mean(axis=(2, 4)).reshape(batch, grid * grid)


def coverage_loss_per_example(coverage_logits: jax.Array, images: jax.Array) -> jax.Array:
    """L_coverage per image, (B,): the mean over tokens of the sigmoid cross-entropy against `patch_coverage`.

    coverage_logits: (B, N) with N = grid^2 tokens, row-major; images: (B, H, W, C) in [-1, 1].
    """
    chex.assert_rank(coverage_logits, 2)
    grid = int(round(coverage_logits.shape[1] ** 0.5))
    chex.assert_equal(grid * grid, coverage_logits.shape[1])
    return optax.sigmoid_binary_cross_entropy(coverage_logits, patch_coverage(images, grid)).mean(axis=1)


def coverage_loss(coverage_logits: jax.Array, images: jax.Array) -> jax.Array:
    """L_coverage: the batch mean of `coverage_loss_per_example`, a scalar."""
    return jnp.mean(coverage_loss_per_example(coverage_logits, images))

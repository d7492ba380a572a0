"""The flow-matching objective (SiT, Ma et al. 2024, Eq. 3: velocity regression)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def flow_matching_loss(v_pred: jax.Array, v_target: jax.Array) -> jax.Array:
    """Mean squared velocity error: mean over (C, H, W) per sample, then over the batch.

    Args:
      v_pred: predicted velocity (B, ...).
      v_target: target velocity, same shape.
    Returns:
      Scalar float32 loss.
    """
    chex.assert_equal_shape([v_pred, v_target])
    error = jnp.square(v_pred.astype(jnp.float32) - v_target.astype(jnp.float32))
    return jnp.mean(error.reshape(error.shape[0], -1).mean(axis=1))

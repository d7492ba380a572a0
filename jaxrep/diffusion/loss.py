"""The flow-matching objective (SiT, Ma et al. 2024, Eq. 3: velocity regression)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def flow_matching_loss_per_example(v_pred: jax.Array, v_target: jax.Array) -> jax.Array:
    """Squared velocity error per sample, mean over (H, W, C): ||v_theta(x_t, t) - (d alpha x + d sigma eps)||^2 / dim.

    Args:
      v_pred: predicted velocity (B, ...).
      v_target: target velocity, same shape.
    Returns:
      float32 (B,).
    """
    chex.assert_equal_shape([v_pred, v_target])
    error = jnp.square(v_pred.astype(jnp.float32) - v_target.astype(jnp.float32))
    return error.reshape(error.shape[0], -1).mean(axis=1)


def flow_matching_loss(v_pred: jax.Array, v_target: jax.Array) -> jax.Array:
    """The batch mean of `flow_matching_loss_per_example` (SiT's training loss): float32 scalar."""
    return jnp.mean(flow_matching_loss_per_example(v_pred, v_target))

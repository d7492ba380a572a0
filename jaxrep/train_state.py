"""The train state shared by every method family, and parameter averaging (EMA / Polyak)."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


class TrainState(flax.struct.PyTreeNode):
    """Immutable train state: everything a run needs to continue identically.

    Attributes:
      step: int32 scalar, number of optimizer updates applied so far.
      params: model parameters (float32).
      ema_params: exponential moving average of `params` (what evaluation uses).
      opt_state: optax state (holds the schedule's step count).
      rng: root PRNG key (uint32[2]); per-step keys are `fold_in(rng, step)`, never carried.
    """

    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: Any
    rng: jax.Array


def ema_update(average: Any, new: Any, decay: float | jax.Array) -> Any:
    """average <- decay * average + (1 - decay) * new, leaf-wise (EMA of weights; DDPG's Polyak targets)."""
    return jax.tree.map(lambda a, n: decay * a + (1.0 - decay) * n.astype(a.dtype), average, new)


def step_key(root: jax.Array, step: jax.Array) -> jax.Array:
    """The per-step key: a pure function of the root key and the step, so resume reproduces it."""
    return jax.random.fold_in(root, jnp.asarray(step, jnp.uint32))

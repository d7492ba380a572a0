"""Classifier-free guidance with a guidance interval (Ho & Salimans 2022; Kynkäänniemi et al. 2024)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxrep.diffusion.samplers import VelocityFn

ConditionalModelFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def classifier_free_guidance(model_fn: ConditionalModelFn, labels: jax.Array, *, null_label: int,
                             scale: float, interval: tuple[float, float] = (0.0, 1.0)) -> VelocityFn:
    """Turns a class-conditional model into a guided `velocity_fn(x, t)`.

    v = v_u + scale * (v_c - v_u) for samples whose t lies in [interval[0], interval[1]], else v = v_c
    (REPA's eval: scale 1.8, interval (0, 0.7); t = 1 is noise, so guidance is off for the noisiest part).
    When no sample of the batch is in the interval, the unconditional pass is skipped (`lax.cond`), as the
    reference does by not doubling the batch.

    Args:
      model_fn: v(x (B, ...), t (B,), labels (B,)) -> (B, ...).
      labels: class ids (B,).
      null_label: the extra class id used for label dropout (num_classes).
      scale: guidance scale w; 1.0 means no guidance.
      interval: (low, high) in t.
    """
    low, high = interval

    def velocity_fn(x: jax.Array, t: jax.Array) -> jax.Array:
        if scale == 1.0:
            return model_fn(x, t, labels)
        in_interval = (t >= low) & (t <= high)

        def guided(_):
            both = model_fn(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                            jnp.concatenate([labels, jnp.full_like(labels, null_label)]))
            v_cond, v_uncond = jnp.split(both, 2)
            mask = jnp.reshape(in_interval, t.shape + (1,) * (x.ndim - 1))
            return jnp.where(mask, v_uncond + scale * (v_cond - v_uncond), v_cond)

        return jax.lax.cond(jnp.any(in_interval), guided, lambda _: model_fn(x, t, labels), None)

    return velocity_fn

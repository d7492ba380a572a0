"""Classifier-free guidance with a guidance interval (Ho & Salimans 2022; Kynkäänniemi et al. 2024).

The samplers take the guidance decision per step from `GuidedVelocity.guide_at` on their float64 time grid,
as REPA's `samplers.py` does (`cfg_scale > 1 and low <= t_cur <= high`, with t_cur from a float64 linspace).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

VelocityFn = Callable[[jax.Array, jax.Array], jax.Array]
ConditionalModelFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class GuidedVelocity:
    """A conditional velocity field, its guided version, and the rule deciding where the guided one is used.

    `conditional(x, t)` is v_c; `both(x, t)` is (v_c, v_u) from one pass on the doubled batch, and
    `guided(x, t)` is v_u + scale * (v_c - v_u) for the whole batch. Called as a
    `VelocityFn`, it decides per sample on its (float32) t; `ode_sample`/`sde_sample` instead decide per step
    with `guide_at` on their float64 grid and evaluate only the branch they chose.
    """

    conditional: VelocityFn
    both: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
    scale: float
    interval: tuple[float, float]

    @property
    def enabled(self) -> bool:
        """REPA guides only when scale > 1; any scale <= 1 samples the conditional model alone."""
        return self.scale > 1.0

    def guide_at(self, times: np.ndarray) -> np.ndarray:
        """REPA's rule `scale > 1 and low <= t <= high` on host times (float64), as a bool array."""
        low, high = self.interval
        times = np.asarray(times, np.float64)
        return np.logical_and(self.enabled, (times >= low) & (times <= high))

    def guided(self, x: jax.Array, t: jax.Array) -> jax.Array:
        v_cond, v_uncond = self.both(x, t)
        return v_uncond + self.scale * (v_cond - v_uncond)

    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        if not self.enabled:
            return self.conditional(x, t)
        low, high = self.interval
        in_interval = (t >= low) & (t <= high)

        def mixed(_):
            v_cond, v_uncond = self.both(x, t)
            mask = jnp.reshape(in_interval, t.shape + (1,) * (x.ndim - 1))
            return jnp.where(mask, v_uncond + self.scale * (v_cond - v_uncond), v_cond)

        return jax.lax.cond(jnp.any(in_interval), mixed, lambda _: self.conditional(x, t), None)


def classifier_free_guidance(model_fn: ConditionalModelFn, labels: jax.Array, *, null_label: int,
                             scale: float, interval: tuple[float, float] = (0.0, 1.0)) -> GuidedVelocity:
    """Turns a class-conditional model into a `GuidedVelocity` for `ode_sample`/`sde_sample`.

    v = v_u + scale * (v_c - v_u) at steps whose t lies in [interval[0], interval[1]], else v = v_c
    (REPA's eval: scale 1.8, interval (0, 0.7); t = 1 is noise, so guidance is off for the noisiest part).
    As in REPA, there is no guidance at all unless scale > 1 (a scale < 1 is not an extrapolation towards
    the unconditional model, it is plain conditional sampling). Unguided steps run one model pass, guided
    steps one pass on the doubled batch.

    Args:
      model_fn: v(x (B, ...), t (B,), labels (B,)) -> (B, ...).
      labels: class ids (B,).
      null_label: the extra class id used for label dropout (num_classes).
      scale: guidance scale w; <= 1 means no guidance.
      interval: (low, high) in t, both ends included.
    """

    def conditional(x: jax.Array, t: jax.Array) -> jax.Array:
        return model_fn(x, t, labels)

    def both(x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        v = model_fn(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                     jnp.concatenate([labels, jnp.full_like(labels, null_label)]))
        v_cond, v_uncond = jnp.split(v, 2)
        return v_cond, v_uncond

    return GuidedVelocity(conditional=conditional, both=both, scale=float(scale),
                          interval=(float(interval[0]), float(interval[1])))

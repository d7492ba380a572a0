"""Samplers that integrate a velocity field from noise (t = 1) to data (t = 0).

`velocity_fn(x, t)` takes x (B, ...) and t (B,) and returns the velocity d x_t / dt. Both samplers follow
REPA's `samplers.py` (Yu et al. 2025), which descends from SiT's (Ma et al. 2024, Sec. 2.3-2.4).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

VelocityFn = Callable[[jax.Array, jax.Array], jax.Array]


def _times(value: jax.Array, batch: int) -> jax.Array:
    return jnp.full((batch,), value, jnp.float32)


def ode_sample(velocity_fn: VelocityFn, noise: jax.Array, *, num_steps: int,
               method: str = "heun") -> jax.Array:
    """Integrates the probability-flow ODE dx/dt = v(x, t) from t = 1 to t = 0.

    Uniform grid t_i = 1 - i / num_steps. "euler" is first order; "heun" (explicit trapezoid) is second
    order and, like REPA's sampler, skips the corrector on the last step (which ends at t = 0), so it uses
    2 * num_steps - 1 velocity evaluations.

    Args:
      velocity_fn: v(x (B, ...), t (B,)) -> (B, ...).
      noise: x at t = 1, (B, ...).
      num_steps: number of integration steps.
      method: "euler" or "heun".
    Returns:
      Samples at t = 0, shaped like noise.
    """
    if method not in ("euler", "heun"):
        raise ValueError(f"method: unknown ODE method {method!r}; use 'euler' or 'heun'")
    batch = noise.shape[0]
    grid = jnp.linspace(1.0, 0.0, num_steps + 1)

    def step(x, i):
        t_cur, t_next = grid[i], grid[i + 1]
        dt = t_next - t_cur
        v_cur = velocity_fn(x, _times(t_cur, batch))
        x_euler = x + dt * v_cur
        if method == "euler":
            return x_euler, None

        def corrected(_):
            v_next = velocity_fn(x_euler, _times(t_next, batch))
            return x + dt * 0.5 * (v_cur + v_next)

        is_last = i == num_steps - 1
        return jax.lax.cond(is_last, lambda _: x_euler, corrected, None), None

    x, _ = jax.lax.scan(step, noise, jnp.arange(num_steps))
    return x


def linear_path_score(x: jax.Array, v: jax.Array, t: jax.Array) -> jax.Array:
    """Score grad log p_t(x) from the velocity on the linear path: s = -(x + (1 - t) v) / t.

    From x_t = (1 - t) x_0 + t eps and v = eps - x_0: E[eps | x_t] = x_t + (1 - t) v and s = -E[eps | x_t] / t.
    """
    tb = jnp.reshape(t, t.shape + (1,) * (x.ndim - 1))
    return -(x + (1.0 - tb) * v) / tb


def sde_sample(velocity_fn: VelocityFn, noise: jax.Array, key: jax.Array, *, num_steps: int,
               last_step_time: float = 0.04) -> jax.Array:
    """Euler-Maruyama on the reverse SDE of the linear path (REPA's `euler_maruyama_sampler`).

    dx = [v - (w/2) s] dt + sqrt(w) dW with diffusion w(t) = 2t and the score s from `linear_path_score`,
    integrated on linspace(1, last_step_time, num_steps) (num_steps - 1 stochastic steps), then one
    noise-free Euler step of the same drift from last_step_time to 0 (the "last step" of SiT/REPA, which
    avoids the 1/t score at t = 0 and returns the mean). Guidance on the velocity (see
    `classifier_free_guidance`) equals guidance on the drift, since the drift is affine in v.

    Args:
      velocity_fn: v(x (B, ...), t (B,)) -> (B, ...).
      noise: x at t = 1, (B, ...).
      key: PRNG key for the Brownian increments.
      num_steps: number of time points before the last step (REPA: 250).
      last_step_time: where the stochastic part stops.
    Returns:
      Samples at t = 0, shaped like noise.
    """
    batch = noise.shape[0]
    grid = jnp.linspace(1.0, last_step_time, num_steps)

    def drift(x, t):
        times = _times(t, batch)
        v = velocity_fn(x, times)
        return v - t * linear_path_score(x, v, times)  # (w/2) s with w = 2t

    def step(x, inputs):
        i, step_key = inputs
        t_cur, t_next = grid[i], grid[i + 1]
        dt = t_next - t_cur
        brownian = jax.random.normal(step_key, x.shape, x.dtype)
        return x + dt * drift(x, t_cur) + jnp.sqrt(2.0 * t_cur) * jnp.sqrt(-dt) * brownian, None

    keys = jax.random.split(key, num_steps - 1)
    x, _ = jax.lax.scan(step, noise, (jnp.arange(num_steps - 1), keys))
    return x + (0.0 - grid[-1]) * drift(x, grid[-1])

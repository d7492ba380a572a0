"""Samplers that integrate a velocity field from noise (t = 1) to data (t = 0).

`velocity_fn(x, t)` takes x (B, ...) and t (B,) and returns the velocity d x_t / dt. Both samplers follow
REPA's `samplers.py` (Yu et al. 2025), which descends from SiT's (Ma et al. 2024, Sec. 2.3-2.4). As there,
the time grid and the per-step guidance decisions are computed in float64 (here on the host, at trace
time, so they enter the scan as constants): a float32 grid puts e.g. step 15 of 50 at t = 0.70000005 and
would skip guidance at t = 0.7 with REPA's (0, 0.7) interval. The model still sees float32 times, as in REPA.
"""

from __future__ import annotations

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.diffusion.guidance import GuidedVelocity, VelocityFn
from jaxrep.diffusion.interpolants import PATH_COEFFICIENTS

SAMPLERS = ("ode", "sde")  # `ode_sample`, `sde_sample`
ODE_METHODS = ("euler", "heun")  # `ode_sample`'s integrators


def _times(value: jax.Array, batch: int) -> jax.Array:
    return jnp.full((batch,), value, jnp.float32)


def float64_linspace(start: float, stop: float, num: int) -> np.ndarray:
    """The float64 values of `torch.linspace(start, stop, num, dtype=torch.float64)`, REPA's time grid (num,).

    Torch fills the first num // 2 points as start + i * step and the rest as stop - (num - 1 - i) * step,
    each rounded once (a fused multiply-add); `np.linspace` rounds differently in the last bit, which flips
    guidance decisions at interval edges (e.g. 110 steps with the (0, 0.7) interval). Exact rationals
    reproduce the single rounding.
    """
    if num == 1:
        return np.array([start], np.float64)
    step = (float(stop) - float(start)) / (num - 1)
    start_q, stop_q, step_q = Fraction(start), Fraction(stop), Fraction(step)
    return np.array([float(start_q + i * step_q) if i < num // 2 else float(stop_q - (num - 1 - i) * step_q)
                     for i in range(num)], np.float64)


def _step_fns(velocity_fn: VelocityFn | GuidedVelocity, t_cur: np.ndarray):
    """(guide (S,) bool, evaluate(x, t, guide)) for steps starting at the float64 times t_cur (S,).

    A plain `VelocityFn` is never guided; a `GuidedVelocity` is guided where `guide_at(t_cur)` holds.
    """
    if not isinstance(velocity_fn, GuidedVelocity):
        return np.zeros(t_cur.shape, bool), lambda x, t, guide: velocity_fn(x, t)
    guidance = velocity_fn
    guide = guidance.guide_at(t_cur)
    if not guide.any() or guide.all():  # one branch only: no cond, and no doubled batch when never guided
        branch = guidance.guided if guide.all() else guidance.conditional
        return guide, lambda x, t, guided: branch(x, t)
    return guide, lambda x, t, guided: jax.lax.cond(guided, guidance.guided, guidance.conditional, x, t)


def ode_sample(velocity_fn: VelocityFn | GuidedVelocity, noise: jax.Array, *, num_steps: int,
               method: str = "heun") -> jax.Array:
    """Integrates the probability-flow ODE dx/dt = v(x, t) from t = 1 to t = 0 (REPA's `euler_sampler`).

    Uniform grid t_i = 1 - i / num_steps (float64 linspace). "euler" is first order; "heun" (explicit
    trapezoid) is second order and, like REPA's sampler, skips the corrector on the last step (which ends at
    t = 0), so it uses 2 * num_steps - 1 velocity evaluations. Guidance (a `GuidedVelocity`) is decided once
    per step at t_cur; as in REPA, the Heun corrector at t_next reuses the predictor's decision, so a step
    that starts inside the interval is guided in both evaluations even when t_next lies outside it.

    Args:
      velocity_fn: v(x (B, ...), t (B,)) -> (B, ...), or a `GuidedVelocity` from `classifier_free_guidance`.
      noise: x at t = 1, (B, ...).
      num_steps: number of integration steps.
      method: "euler" or "heun".
    Returns:
      Samples at t = 0, shaped like noise.
    """
    if method not in ODE_METHODS:
        raise ValueError(f"method: unknown ODE method {method!r}; use 'euler' or 'heun'")
    batch = noise.shape[0]
    grid = float64_linspace(1.0, 0.0, num_steps + 1)
    guide, evaluate = _step_fns(velocity_fn, grid[:-1])

    def step(x, inputs):
        i, t_cur, t_next, dt, guided = inputs
        v_cur = evaluate(x, _times(t_cur, batch), guided)
        x_euler = x + dt * v_cur
        if method == "euler":
            return x_euler, None

        def corrected(_):
            v_next = evaluate(x_euler, _times(t_next, batch), guided)
            return x + dt * 0.5 * (v_cur + v_next)

        return jax.lax.cond(i == num_steps - 1, lambda _: x_euler, corrected, None), None

    inputs = (jnp.arange(num_steps), jnp.asarray(grid[:-1], jnp.float32), jnp.asarray(grid[1:], jnp.float32),
              jnp.asarray(np.diff(grid), jnp.float32), jnp.asarray(guide))
    x, _ = jax.lax.scan(step, noise, inputs)
    return x


def score_from_velocity(x: jax.Array, v: jax.Array, t: jax.Array, path: str = "linear") -> jax.Array:
    """Score grad log p_t(x) from the velocity on the path x_t = alpha_t x_0 + sigma_t eps.

    From v = alpha'_t x_0 + sigma'_t eps: E[eps | x_t] = (alpha'_t x - alpha_t v) / (alpha'_t sigma_t -
    alpha_t sigma'_t) and s = -E[eps | x_t] / sigma_t (REPA's `get_score_from_velocity`, written without its
    division by alpha'_t, which vanishes at t = 0 on the gvp path). Linear path: s = -(x + (1 - t) v) / t.

    Args:
      x: x_t (B, ...); v: velocity at (x, t), same shape; t: times (B,) in (0, 1].
      path: "linear" or "gvp".
    """
    if path not in PATH_COEFFICIENTS:
        raise ValueError(f"path: unknown interpolant {path!r}; use one of {sorted(PATH_COEFFICIENTS)}")
    tb = jnp.reshape(t, t.shape + (1,) * (x.ndim - 1)).astype(x.dtype)
    alpha, sigma, d_alpha, d_sigma = PATH_COEFFICIENTS[path](tb)
    eps_mean = (d_alpha * x - alpha * v) / (d_alpha * sigma - alpha * d_sigma)
    return -eps_mean / sigma


def sde_sample(velocity_fn: VelocityFn | GuidedVelocity, noise: jax.Array, key: jax.Array, *, num_steps: int,
               path: str = "linear", last_step_time: float = 0.04) -> jax.Array:
    """Euler-Maruyama on the reverse SDE of the interpolant (REPA's `euler_maruyama_sampler`).

    dx = [v - (w/2) s] dt + sqrt(w) dW with diffusion w(t) = 2t on either path (REPA's `compute_diffusion`)
    and the path's score s from `score_from_velocity`, integrated on the float64 linspace(1, last_step_time,
    num_steps) (num_steps - 1 stochastic steps), then one noise-free Euler step of the same drift from
    last_step_time to 0 (the "last step" of SiT/REPA, which avoids the 1/t score at t = 0 and returns the
    mean). Guidance on the velocity (a `GuidedVelocity`, decided per step at t_cur, last step included)
    equals REPA's guidance on the drift, since the drift is affine in v.

    Args:
      velocity_fn: v(x (B, ...), t (B,)) -> (B, ...), or a `GuidedVelocity` from `classifier_free_guidance`.
      noise: x at t = 1, (B, ...).
      key: PRNG key for the Brownian increments.
      num_steps: number of time points before the last step (REPA: 250).
      path: the interpolant the model was trained on, "linear" or "gvp".
      last_step_time: where the stochastic part stops.
    Returns:
      Samples at t = 0, shaped like noise.
    """
    if path not in PATH_COEFFICIENTS:
        raise ValueError(f"path: unknown interpolant {path!r}; use one of {sorted(PATH_COEFFICIENTS)}")
    batch = noise.shape[0]
    grid = np.append(float64_linspace(1.0, last_step_time, num_steps), 0.0)
    guide, evaluate = _step_fns(velocity_fn, grid[:-1])

    def drift(x, t, guided):
        times = _times(t, batch)
        v = evaluate(x, times, guided)
        return v - t * score_from_velocity(x, v, times, path)  # (w/2) s with w = 2t

    def step(x, inputs):
        t_cur, dt, guided, step_key = inputs
        brownian = jax.random.normal(step_key, x.shape, x.dtype)
        return x + dt * drift(x, t_cur, guided) + jnp.sqrt(2.0 * t_cur) * jnp.sqrt(-dt) * brownian, None

    t_cur = jnp.asarray(grid[:-1], jnp.float32)
    dt = jnp.asarray(np.diff(grid), jnp.float32)
    guide = jnp.asarray(guide)
    keys = jax.random.split(key, num_steps - 1)
    x, _ = jax.lax.scan(step, noise, (t_cur[:-1], dt[:-1], guide[:-1], keys))
    return x + dt[-1] * drift(x, t_cur[-1], guide[-1])

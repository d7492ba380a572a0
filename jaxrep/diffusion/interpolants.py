"""Stochastic interpolants between data (t = 0) and Gaussian noise (t = 1) (SiT, Ma et al. 2024, Sec. 2).

x_t = alpha_t x + sigma_t noise, and the velocity target is d x_t / dt = alpha'_t x + sigma'_t noise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _broadcast_time(t: jax.Array, x: jax.Array) -> jax.Array:
    """Reshapes t (B,) to (B, 1, ..., 1) so it broadcasts against x (B, ...)."""
    return jnp.reshape(t, t.shape + (1,) * (x.ndim - t.ndim)).astype(x.dtype)


def linear_coefficients(t: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(alpha, sigma, d alpha / dt, d sigma / dt) of the linear path: alpha = 1 - t, sigma = t."""
    return 1.0 - t, t, -jnp.ones_like(t), jnp.ones_like(t)


def gvp_coefficients(t: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(alpha, sigma, d alpha / dt, d sigma / dt) of the GVP path: alpha = cos(pi t / 2), sigma = sin(pi t / 2)
    (REPA's `path_type="cosine"`)."""
    half_pi = 0.5 * jnp.pi
    alpha, sigma = jnp.cos(half_pi * t), jnp.sin(half_pi * t)
    return alpha, sigma, -half_pi * sigma, half_pi * alpha


PATH_COEFFICIENTS = {"linear": linear_coefficients, "gvp": gvp_coefficients}


def _interpolate(coefficients, x: jax.Array, noise: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    alpha, sigma, d_alpha, d_sigma = coefficients(_broadcast_time(t, x))
    return alpha * x + sigma * noise, d_alpha * x + d_sigma * noise


def linear_interpolant(x: jax.Array, noise: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """SiT's linear path: x_t = (1 - t) x + t noise, v_target = noise - x.

    Args:
      x: clean data (B, ...).
      noise: standard normal noise, same shape as x.
      t: times (B,) in [0, 1]; t = 0 is data, t = 1 is noise.
    Returns:
      (x_t, v_target), both shaped like x.
    """
    return _interpolate(linear_coefficients, x, noise, t)


def gvp_interpolant(x: jax.Array, noise: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """SiT's generalised variance-preserving path: alpha = cos(pi t / 2), sigma = sin(pi t / 2).

    Shapes as in `linear_interpolant`; v_target = -(pi/2) sin(pi t/2) x + (pi/2) cos(pi t/2) noise.
    """
    return _interpolate(gvp_coefficients, x, noise, t)


INTERPOLANTS = {"linear": linear_interpolant, "gvp": gvp_interpolant}
TIME_WEIGHTINGS = ("uniform", "lognormal")  # `sample_time`'s weightings


def sample_time(key: jax.Array, shape: int | tuple[int, ...] = (), weighting: str = "uniform",
                path: str = "linear") -> jax.Array:
    """Training times in [0, 1] of the given shape (e.g. (B,), or () per example under vmap).

    "uniform": t ~ U(0, 1) (REPA's default). "lognormal" (REPA's `--weighting lognormal`, after EDM): the
    noise-to-signal ratio sigma_t / alpha_t = exp(N(0, 1)), i.e. t = r / (1 + r) on the linear path and
    t = (2 / pi) atan(r) on the gvp path (REPA's `SILoss`, "cosine").
    """
    if weighting == "uniform":
        return jax.random.uniform(key, shape)
    if weighting == "lognormal":
        ratio = jnp.exp(jax.random.normal(key, shape))
        if path == "linear":
            return ratio / (1.0 + ratio)
        if path == "gvp":
            return (2.0 / jnp.pi) * jnp.arctan(ratio)
        raise ValueError(f"path: unknown interpolant {path!r}; use 'linear' or 'gvp'")
    raise ValueError(f"weighting: unknown time weighting {weighting!r}; use 'uniform' or 'lognormal'")

"""Stochastic interpolants between data (t = 0) and Gaussian noise (t = 1) (SiT, Ma et al. 2024, Sec. 2).

x_t = alpha_t x + sigma_t noise, and the velocity target is d x_t / dt = alpha'_t x + sigma'_t noise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _broadcast_time(t: jax.Array, x: jax.Array) -> jax.Array:
    """Reshapes t (B,) to (B, 1, ..., 1) so it broadcasts against x (B, ...)."""
    return jnp.reshape(t, t.shape + (1,) * (x.ndim - t.ndim)).astype(x.dtype)


def linear_interpolant(x: jax.Array, noise: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """SiT's linear path: x_t = (1 - t) x + t noise, v_target = noise - x.

    Args:
      x: clean data (B, ...).
      noise: standard normal noise, same shape as x.
      t: times (B,) in [0, 1]; t = 0 is data, t = 1 is noise.
    Returns:
      (x_t, v_target), both shaped like x.
    """
    tb = _broadcast_time(t, x)
    return (1.0 - tb) * x + tb * noise, noise - x


def gvp_interpolant(x: jax.Array, noise: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """SiT's generalised variance-preserving path: alpha = cos(pi t / 2), sigma = sin(pi t / 2).

    Shapes as in `linear_interpolant`; v_target = -(pi/2) sin(pi t/2) x + (pi/2) cos(pi t/2) noise.
    """
    tb = _broadcast_time(t, x)
    half_pi = 0.5 * jnp.pi
    alpha, sigma = jnp.cos(half_pi * tb), jnp.sin(half_pi * tb)
    return alpha * x + sigma * noise, half_pi * (-sigma * x + alpha * noise)


INTERPOLANTS = {"linear": linear_interpolant, "gvp": gvp_interpolant}


def sample_time(key: jax.Array, shape: int | tuple[int, ...] = (), weighting: str = "uniform") -> jax.Array:
    """Training times in [0, 1] of the given shape (e.g. (B,), or () per example under vmap).

    "uniform": t ~ U(0, 1) (REPA's default). "lognormal": sigma = exp(N(0, 1)), t = sigma / (1 + sigma)
    (REPA's `--weighting lognormal`).
    """
    if weighting == "uniform":
        return jax.random.uniform(key, shape)
    if weighting == "lognormal":
        sigma = jnp.exp(jax.random.normal(key, shape))
        return sigma / (1.0 + sigma)
    raise ValueError(f"weighting: unknown time weighting {weighting!r}; use 'uniform' or 'lognormal'")

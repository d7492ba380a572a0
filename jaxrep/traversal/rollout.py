"""The discrete potential flow z_{i+1} = z_i + step * grad_z u_k(z_i, i) (Song et al., ICML 2023; the
official `WavePDE.forward` loop with step = 1, and `inference` with step = eps at traversal time).

Each step is gradient ascent on the potential at integer time i. The loop is a `lax.scan` over i, so
gradients flow through the whole rollout (the official code's `create_graph=True`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from jaxrep.traversal.potentials import Potential


class Trajectory(NamedTuple):
    """latents: (T + 1, B, d), z_0 ... z_T; velocities: (T, B, d), grad_z u(z_i, i) for i < T."""

    latents: jax.Array
    velocities: jax.Array


def velocity(u: Potential, z: jax.Array, t: jax.Array | float) -> jax.Array:
    """grad_z u(z, t) for a batch z: (B, d) at one shared time t -> (B, d)."""
    chex.assert_rank(z, 2)
    return jax.vmap(jax.grad(u, argnums=0), in_axes=(0, None))(z, jnp.asarray(t, jnp.float32))


def rollout(u: Potential, z0: jax.Array, num_steps: int, *, step_size: float | jax.Array = 1.0) -> Trajectory:
    """T = num_steps flow steps from z0: (B, d); step i uses time t = i."""
    chex.assert_rank(z0, 2)

    def step(z, i):
        v = velocity(u, z, i.astype(jnp.float32))
        return z + step_size * v, (z, v)

    last, (latents, velocities) = jax.lax.scan(step, z0, jnp.arange(num_steps))
    return Trajectory(jnp.concatenate([latents, last[None]], axis=0), velocities)


def traversal_pair(trajectory: Trajectory, t_star: jax.Array | int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The pair the classifier sees and the step the variation term differentiates along.

    latent1 = z_{t*+1} = z_{t*} + step grad u(z_{t*}, t*), latent2 = z_{t*+2}, and direction =
    grad u(z_{t*+1}, t* + 1), all (B, d) (official `loss_jvp` / `forward` outputs). t* must lie in [0, T - 2]
    (the official trainers draw it from that range): checked when it is a Python int, clamped when traced.
    """
    num_steps = trajectory.velocities.shape[0]
    if isinstance(t_star, int) and not 0 <= t_star <= num_steps - 2:
        raise ValueError(f"t_star must be in [0, {num_steps - 2}] for a rollout of {num_steps} steps, got {t_star}")
    latent1 = jax.lax.dynamic_index_in_dim(trajectory.latents, t_star + 1, keepdims=False)
    latent2 = jax.lax.dynamic_index_in_dim(trajectory.latents, t_star + 2, keepdims=False)
    direction = jax.lax.dynamic_index_in_dim(trajectory.velocities, t_star + 1, keepdims=False)
    return latent1, latent2, direction


def reflected_pair(z0: jax.Array, latent1: jax.Array, latent2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The pair mirrored through z0: (2 z0 - latent2, 2 z0 - latent1), all (B, d).

    The official pretrained-VAE trainer shows the classifier this mirrored pair with probability 1/2, so
    each potential also learns the backward direction of its path.
    """
    return 2.0 * z0 - latent2, 2.0 * z0 - latent1


def traverse_all(family: Any, params: Any, z0: jax.Array, num_steps: int, *,
                 step_size: float | jax.Array = 1.0) -> jax.Array:
    """Every potential's rollout from the same z0: (B, d) -> latents (K, T + 1, B, d).

    `family` is a potential family (`MLPPotentials`, `LinearDirections`); decoding latents[:, :, b] gives
    traversal strip b, one row per potential and one column per step.
    """
    def one(k):
        return rollout(family.potential(params, k), z0, num_steps, step_size=step_size).latents

    return jax.vmap(one)(jnp.arange(family.num_potentials))

"""Losses of potential-flow traversals as pure functions (Song et al., ICML 2023; the official
`WavePDE.loss_ic`, `loss_pde`, `loss_jvp`, `forward` and the trainers in `lib/trainer*.py`).

Per batch one potential k and one time t* are drawn; with the rollout z_0 = z, z_{i+1} = z_i + grad u_k(z_i, i):

    L_ic   = mean_{B,d} (grad_z u_k(z_0, 0))^2                       initial condition: no flow at t = 0
    L_pde  = (1/T) sum_{i<T} mean_{B,.} r(z_i, i)^2                  PDE residual along the rollout
    L_var  = mean_{B,pixels} (J_G(z_{t*+1}) grad u_k(z_{t*+1}, t*+1))^2   variation of the generator's output
    L_flow = L_ic + L_pde - L_var                                    (maximise the variation; unbounded below)
    L_cls  = CE(classifier(G(z_{t*+1}), G(z_{t*+2})), k)             which potential made the pair
    total  = lambda_cls L_cls + lambda_pde L_flow                    (frozen-generator setting)

In the from-scratch VAE setting the classifier is unused and the flow is tied to the encoder's latents of a
transformation sequence instead (`sequence_matching_loss`).
"""

from __future__ import annotations

from typing import Callable

import chex
import jax
import jax.numpy as jnp
import optax

from jaxrep.traversal.pde import pde_residual
from jaxrep.traversal.potentials import Potential
from jaxrep.traversal.rollout import rollout, traversal_pair, velocity


def initial_condition_loss_per_example(u: Potential, z0: jax.Array) -> jax.Array:
    """L_ic per latent, (B,): mean over d of (grad_z u(z0, 0))^2; z0: (B, d)."""
    return jnp.mean(jnp.square(velocity(u, z0, 0.0)), axis=-1)


def initial_condition_loss(u: Potential, z0: jax.Array) -> jax.Array:
    """L_ic = mean (grad_z u(z0, 0))^2 over (B, d); z0: (B, d). The gradient, not u, vanishes at t = 0."""
    return jnp.mean(initial_condition_loss_per_example(u, z0))


def pde_residual_loss_per_example(u: Potential, latents: jax.Array, *, equation: str = "wave",
                                  speed: jax.Array | float = 1.0, operator: str = "hessian_rowsum",
                                  key: jax.Array | None = None, num_probes: int = 1) -> jax.Array:
    """L_pde per rollout, (B,): (1/T) sum_i mean_. r(z_i^b, i)^2 for latents (T, B, d); see `pde_residual_loss`."""
    residuals = _pde_residuals(u, latents, equation=equation, speed=speed, operator=operator, key=key,
                               num_probes=num_probes)
    return jnp.mean(jnp.square(residuals).reshape(*residuals.shape[:2], -1), axis=(0, 2))


def pde_residual_loss(u: Potential, latents: jax.Array, *, equation: str = "wave", speed: jax.Array | float = 1.0,
                      operator: str = "hessian_rowsum", key: jax.Array | None = None,
                      num_probes: int = 1) -> jax.Array:
    """L_pde = (1/T) sum_i mean_{B,.} r(z_i, i)^2 for latents (T, B, d) at times i = 0 .. T-1.

    Gradients flow through the latents (the points of the rollout) as well as through u. `key` is split
    across (step, sample) for the Hutchinson probes; see `pde.pde_residual` for the other options.
    """
    residuals = _pde_residuals(u, latents, equation=equation, speed=speed, operator=operator, key=key,
                               num_probes=num_probes)
    return jnp.mean(jnp.square(residuals).reshape(residuals.shape[0], -1), axis=1).mean()


def _pde_residuals(u: Potential, latents: jax.Array, *, equation: str, speed: jax.Array | float, operator: str,
                   key: jax.Array | None, num_probes: int) -> jax.Array:
    """r(z_i^b, i) for latents (T, B, d): (T, B, ...)."""
    chex.assert_rank(latents, 3)
    num_steps, batch = latents.shape[:2]
    keys = None if key is None else jax.random.split(key, (num_steps, batch))

    def point(z, t, point_key):
        return pde_residual(u, z, t, equation=equation, speed=speed, operator=operator, key=point_key,
                            num_probes=num_probes)

    times = jnp.arange(num_steps, dtype=jnp.float32)
    key_axis = None if keys is None else 0
    per_sample = jax.vmap(point, in_axes=(0, None, key_axis))
    return jax.vmap(per_sample, in_axes=(0, 0, key_axis))(latents, times, keys)


def variation_loss_per_example(generator: Callable[[jax.Array], jax.Array], latent: jax.Array,
                               direction: jax.Array) -> jax.Array:
    """L_var per latent, (B,): mean over the outputs of (J_G(latent) direction)^2 (shapes as in `variation_loss`)."""
    chex.assert_equal_shape([latent, direction])
    _, tangent = jax.jvp(generator, (latent,), (direction,))
    return jnp.mean(jnp.square(tangent).reshape(tangent.shape[0], -1), axis=1)


def variation_loss(generator: Callable[[jax.Array], jax.Array], latent: jax.Array,
                   direction: jax.Array) -> jax.Array:
    """L_var = mean over (B, outputs) of (J_G(latent) direction)^2, by one forward-mode `jax.jvp`.

    Args:
      generator: G, (B, d) -> (B, ...) acting on each sample independently.
      latent: (B, d), the point of the Jacobian.
      direction: (B, d), the tangent.
    """
    return jnp.mean(variation_loss_per_example(generator, latent, direction))


def potential_flow_loss_per_example(u: Potential, speed: jax.Array | float, z0: jax.Array,
                                    generator: Callable[[jax.Array], jax.Array], t_star: jax.Array | int, *,
                                    num_steps: int, step_size: float = 1.0, equation: str = "wave",
                                    operator: str = "hessian_rowsum", key: jax.Array | None = None,
                                    num_probes: int = 1, variation_weight: float = 1.0
                                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """L_flow per starting latent, (B,), and the aux of `potential_flow_loss` with its terms "ic", "pde" and
    "variation" per latent (B,)."""
    chex.assert_rank(z0, 2)
    trajectory = rollout(u, z0, num_steps, step_size=step_size)
    ic = initial_condition_loss_per_example(u, z0)
    pde = pde_residual_loss_per_example(u, trajectory.latents[:-1], equation=equation, speed=speed,
                                        operator=operator, key=key, num_probes=num_probes)
    latent1, latent2, direction = traversal_pair(trajectory, t_star)
    variation = variation_loss_per_example(generator, latent1, direction)
    aux = {
        "ic": ic,
        "pde": pde,
        "variation": variation,
        "latent1": latent1,
        "latent2": latent2,
        "velocity_norm": jnp.mean(jnp.linalg.norm(trajectory.velocities, axis=-1)),
    }
    return ic + pde - variation_weight * variation, aux


def potential_flow_loss(u: Potential, speed: jax.Array | float, z0: jax.Array,
                        generator: Callable[[jax.Array], jax.Array], t_star: jax.Array | int, *, num_steps: int,
                        step_size: float = 1.0, equation: str = "wave", operator: str = "hessian_rowsum",
                        key: jax.Array | None = None, num_probes: int = 1, variation_weight: float = 1.0
                        ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """L_flow = L_ic + L_pde - variation_weight * L_var for one potential (official `WavePDE.forward`).

    Args:
      u: the selected potential u_k, u(z: (d,), t: ()) -> ().
      speed: its wave speed c_k, scalar.
      z0: (B, d) starting latents.
      generator: G, (B, d) -> (B, ...), for the variation term.
      t_star: time of the pair, in [0, num_steps - 2]; may be traced.
      num_steps: T, the rollout length (the official D // 2).
      step_size: the flow step (1 in training upstream).
      equation, operator, key, num_probes: the PDE residual, see `pde.pde_residual`.
      variation_weight: weight of L_var (1 upstream).

    Returns:
      loss: scalar L_flow.
      aux: the terms "ic", "pde", "variation"; "latent1", "latent2" (B, d), the pair for the classifier;
        "velocity_norm", the mean ||grad u|| along the rollout (watch it: -L_var rewards large steps).
    """
    losses, aux = potential_flow_loss_per_example(u, speed, z0, generator, t_star, num_steps=num_steps,
                                                  step_size=step_size, equation=equation, operator=operator, key=key,
                                                  num_probes=num_probes, variation_weight=variation_weight)
    return jnp.mean(losses), {**aux, **{term: jnp.mean(aux[term]) for term in ("ic", "pde", "variation")}}


def traversal_classifier_loss_per_example(logits: jax.Array, k: jax.Array | int) -> jax.Array:
    """L_cls per pair, (B,): CE(logits_b, k) with one shared label k; logits (B, K)."""
    chex.assert_rank(logits, 2)
    return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.full(logits.shape[:1], k, jnp.int32))


def traversal_classifier_loss(logits: jax.Array, k: jax.Array | int) -> tuple[jax.Array, jax.Array]:
    """L_cls = CE(logits, k) with one shared label k for the batch; logits (B, K). Returns (loss, accuracy)."""
    loss = jnp.mean(traversal_classifier_loss_per_example(logits, k))
    accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == k).astype(jnp.float32))
    return loss, accuracy


def sequence_matching_loss_per_example(z_t: jax.Array, z_next: jax.Array, latent1: jax.Array,
                                       latent2: jax.Array) -> jax.Array:
    """`sequence_matching_loss` per example, (B,): both squared errors averaged over d."""
    chex.assert_equal_shape([z_t, z_next, latent1, latent2])
    return (jnp.mean(jnp.square(z_next - z_t + latent1 - latent2), axis=-1)
            + jnp.mean(jnp.square(z_t - latent1), axis=-1))


def sequence_matching_loss(z_t: jax.Array, z_next: jax.Array, latent1: jax.Array, latent2: jax.Array) -> jax.Array:
    """Ties the flow to an observed transformation sequence (official `trainer_vae_scratch*.py` latent loss):

        mean (z_{t+1} - z_t - (latent2 - latent1))^2 + mean (z_t - latent1)^2

    where z_t, z_{t+1}: (B, d) are encoder samples of x_t, x_{t+1} and latent1, latent2: (B, d) the flow's
    pair from the encoding of x at the sequence step t: step 1 lands on z_t, step 2 moves as the data do.
    """
    return jnp.mean(sequence_matching_loss_per_example(z_t, z_next, latent1, latent2))

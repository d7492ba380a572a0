"""The two training objectives of potential-flow traversals (Song et al., ICML 2023) as train-step losses.

- `make_traversal_loss`: the frozen-generator setting (official `lib/trainer_vae.py`). Per example

      z0 (the batch), k ~ U{0..K-1}, t* ~ U{0..T-2}, (latent1, latent2) = (z_{t*+1}, z_{t*+2}) of the flow of u_k
      with probability 1/2 (`reflect`) the pair is mirrored through z0: (2 z0 - latent2, 2 z0 - latent1)
      L = lambda_cls CE(classifier(G(first), G(second)), k) + lambda_pde (L_ic + L_pde - L_var)

  The linear family trains on the classifier term alone (`jaxrep/traversal/linear.py`).
- `make_scratch_vae_loss`: the from-scratch setting (official `lib/trainer_vae_scratch_dsprites.py`): the VAE
  trains on transformation sequences (x, x_t, x_{t+1}) jointly with the potentials, per example

      L = ELBO(x) + [BCE(dec(latent2), x_{t+1}) + KL(q(z | x_{t+1}))] + lambda_pde (L_ic + L_pde - L_var)
          + mean (z_{t+1} - z_t + latent1 - latent2)^2 + mean (z_t - latent1)^2

  with the flow started at a posterior sample z of x.

The terms are the pure losses of `jaxrep.traversal.losses` and `jaxrep.nn.vae.elbo_loss`. Deviation from the
official trainers: k, t*, the reflection and the logit noise are drawn per example from the step's
per-example keys (one k and t* per batch upstream); the expected loss is the same, and the step stays
independent of how the batch is sharded.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxrep.nn.vae import ConvVAE, elbo_loss, posterior_samples
from jaxrep.traversal.classifier import PairClassifier
from jaxrep.traversal.linear import LinearDirections
from jaxrep.traversal.losses import potential_flow_loss, sequence_matching_loss, traversal_classifier_loss
from jaxrep.traversal.potentials import MLPPotentials
from jaxrep.traversal.rollout import reflected_pair, rollout, traversal_pair

__all__ = ["FlowTerm", "make_scratch_vae_loss", "make_traversal_loss", "per_example_flow"]

FLOW_METRICS = ("ic", "pde", "variation", "velocity_norm")


@dataclasses.dataclass(frozen=True)
class FlowTerm:
    """Settings of lambda_pde L_flow (`losses.potential_flow_loss`)."""

    num_steps: int  # T, the rollout length
    weight: float = 1.0  # lambda_pde
    equation: str = "wave"  # see `pde.pde_residual`
    operator: str = "hessian_rowsum"  # spatial operator; "hutchinson" draws probes from the example key
    num_probes: int = 1  # Hutchinson probes per point
    variation_weight: float = 1.0  # weight of L_var inside L_flow


def per_example_flow(family: MLPPotentials, family_params: Any, flow: FlowTerm,
                     generate: Callable[[jax.Array], jax.Array], k: jax.Array, t_star: jax.Array, z0: jax.Array,
                     keys: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """L_flow of each example under its own potential k and time t*, vmapped over the batch.

    Args:
      family: the potentials; family_params their parameters.
      generate: G, (n, d) -> (n, H, W, C), for the variation term.
      k, t_star: (B,) int32; z0: (B, d) starting latents; keys: (B,) PRNG keys (used by "hutchinson" only).
    Returns:
      (B,) L_flow, and aux: "latent1", "latent2" (B, d) and the terms `FLOW_METRICS`, each (B,).
    """
    hutchinson = flow.operator == "hutchinson"

    def one(k, t, z, key):
        loss, aux = potential_flow_loss(
            family.potential(family_params, k), family.wave_speed(family_params, k), z[None], generate, t,
            num_steps=flow.num_steps, equation=flow.equation, operator=flow.operator,
            key=key if hutchinson else None, num_probes=flow.num_probes, variation_weight=flow.variation_weight)
        return loss, {name: value[0] if value.ndim == 2 else value for name, value in aux.items()}

    return jax.vmap(one)(k, t_star, z0, keys)


def make_traversal_loss(family: MLPPotentials | LinearDirections, classifier: PairClassifier,
                        generate: Callable[[jax.Array], jax.Array], flow: FlowTerm, *, classifier_weight: float = 1.0,
                        reflect: bool = True) -> Callable:
    """loss_fn(params, batch, example_keys, step) for `jaxrep.training.make_train_step` (module docstring).

    params = {"family", "classifier"}; batch = {"z": (B, d) starting latents}; example_keys: (B,);
    `generate`: the frozen G, (B, d) -> (B, H, W, C) in [0, 1], closed over. A `LinearDirections` family
    uses `flow.num_steps` only. Metrics: "classification", "accuracy", and for potentials "flow" and
    `FLOW_METRICS`, batch means.
    """
    num_potentials, num_steps = family.num_potentials, flow.num_steps
    with_flow = not isinstance(family, LinearDirections)

    def loss_fn(params, batch, example_keys, step):
        del step
        z0 = batch["z"]
        keys = jax.vmap(lambda key: jax.random.split(key, 5))(example_keys)
        k = jax.vmap(lambda key: jax.random.randint(key, (), 0, num_potentials))(keys[:, 0])
        t_star = jax.vmap(lambda key: jax.random.randint(key, (), 0, num_steps - 1))(keys[:, 1])
        if with_flow:
            flow_loss, aux = per_example_flow(family, params["family"], flow, generate, k, t_star, z0, keys[:, 2])
            first, second = aux["latent1"], aux["latent2"]
        else:
            def pair(k, t, z):
                latent1, latent2, _ = traversal_pair(rollout(family.potential(params["family"], k), z[None],
                                                             num_steps), t)
                return latent1[0], latent2[0]

            first, second = jax.vmap(pair)(k, t_star, z0)
        if reflect:
            mirrored = jax.vmap(lambda key: jax.random.bernoulli(key))(keys[:, 3])[:, None]
            reflected_first, reflected_second = reflected_pair(z0, first, second)
            first = jnp.where(mirrored, reflected_first, first)
            second = jnp.where(mirrored, reflected_second, second)
        images = generate(jnp.concatenate([first, second]))
        image1, image2 = jnp.split(images, 2)

        def logits_of(a, b, key):  # per example: its own logit noise
            return classifier.apply({"params": params["classifier"]}, a[None], b[None], key)[0]

        logits = jax.vmap(logits_of)(image1, image2, keys[:, 4])
        classification, accuracy = traversal_classifier_loss(logits, k)
        loss = classifier_weight * classification
        metrics = {"classification": classification, "accuracy": accuracy}
        if with_flow:
            loss = loss + flow.weight * jnp.mean(flow_loss)
            metrics.update(flow=jnp.mean(flow_loss), **{name: jnp.mean(aux[name]) for name in FLOW_METRICS})
        return loss, metrics

    return loss_fn


def make_scratch_vae_loss(vae: ConvVAE, potentials: MLPPotentials, flow: FlowTerm) -> Callable:
    """loss_fn(params, batch, example_keys, step) for `jaxrep.training.make_train_step`: the from-scratch
    objective (module docstring). params = {"vae", "potentials"}; batch: `TransformationSequences` items,
    image, image_t, image_next (B, 64, 64, 1), potential, time (B,). Metrics: the ELBO terms, "elbo",
    "shifted_elbo", "flow", "matching" and `FLOW_METRICS`, batch means."""

    def loss_fn(params, batch, example_keys, step):
        del step
        keys = jax.vmap(lambda key: jax.random.split(key, 4))(example_keys)
        vae_params = params["vae"]
        mean, log_var, z = posterior_samples(vae, vae_params, batch["image"], keys[:, 0])
        _, _, z_t = posterior_samples(vae, vae_params, batch["image_t"], keys[:, 1])
        mean_next, log_var_next, z_next = posterior_samples(vae, vae_params, batch["image_next"], keys[:, 2])
        decode = lambda latents: vae.apply({"params": vae_params}, latents, method="decode")
        generate = lambda latents: vae.apply({"params": vae_params}, latents, method="generate")

        flow_loss, aux = per_example_flow(potentials, params["potentials"], flow, generate, batch["potential"],
                                          batch["time"], z, keys[:, 3])
        elbo, elbo_aux = elbo_loss(decode(z), batch["image"], mean, log_var)
        shifted, _ = elbo_loss(decode(aux["latent2"]), batch["image_next"], mean_next, log_var_next)
        matching = sequence_matching_loss(z_t, z_next, aux["latent1"], aux["latent2"])
        loss = elbo + shifted + flow.weight * jnp.mean(flow_loss) + matching
        metrics = dict(elbo_aux, elbo=elbo, shifted_elbo=shifted, flow=jnp.mean(flow_loss), matching=matching,
                       **{name: jnp.mean(aux[name]) for name in FLOW_METRICS})
        return loss, metrics

    return loss_fn

"""The SiT training objective as a `LossFn` for `jaxrep.training.make_train_step`.

Per example: t from the time weighting, noise ~ N(0, I), label dropped to the null class with probability
`class_dropout_prob` (classifier-free guidance training; REPA drops inside the model, here it is explicit),
x_t and the velocity target from the interpolant, and the flow-matching loss on the model's prediction.
With an `AlignmentTerm` (`jaxrep.align.objective`), the same forward pass also returns the hidden state the
REPA-family term aligns, and the loss is L_velocity + lambda(step) * L_REPA.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp

from jaxrep.diffusion.interpolants import INTERPOLANTS, sample_time
from jaxrep.diffusion.latents import LatentNormalization, clean_input
from jaxrep.diffusion.loss import flow_matching_loss
from jaxrep.nn.sit import SiT


class HiddenStateTerm(Protocol):
    """A loss term on the SiT's hidden state after block `depth` (`jaxrep.align.objective.AlignmentTerm` is one):
    term(projector_params, hidden (B, N, D), target, step) -> (weighted loss, metrics)."""

    depth: int

    def __call__(self, projector_params: Any, hidden: jax.Array, target: Any,
                 step: jax.Array) -> tuple[jax.Array, dict]: ...


def draw_training_noise(keys: jax.Array, sample_shape: tuple[int, ...], *, time_weighting: str,
                        class_dropout_prob: float, path: str = "linear") -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-example randomness from per-example keys (B, 2): t (B,), noise (B, *sample_shape), drop (B,) bool.

    The time weighting depends on the path (`sample_time`)."""

    def draw(key):
        k_time, k_noise, k_drop = jax.random.split(key, 3)
        return (sample_time(k_time, (), time_weighting, path), jax.random.normal(k_noise, sample_shape),
                jax.random.bernoulli(k_drop, class_dropout_prob))

    return jax.vmap(draw)(keys)


def make_diffusion_loss(model: SiT, *, path: str = "linear", time_weighting: str = "uniform",
                        class_dropout_prob: float = 0.1, alignment: HiddenStateTerm | None = None,
                        latent_normalization: LatentNormalization = LatentNormalization()):
    """Returns loss_fn(params, batch, keys, step) -> (loss, metrics) with params = {"sit": ...}.

    batch: {"image": (B, H, W, C) float in [-1, 1] (or latents), "label": (B,) int32}; a batch from a prepared
    latent dataset also holds "latent_std", and x_0 is then a fresh posterior sample normalised by
    `latent_normalization` (`jaxrep.diffusion.latents.clean_input`).
    With `alignment`: params = {"sit": ..., "projector": ...}, batch also holds the encoder targets
    "align_target" (B, N, D_enc), and the loss adds alignment(projector params, h_depth, targets, step).
    """
    interpolant = INTERPOLANTS[path]

    def loss_fn(params: Any, batch: dict, keys: jax.Array, step: jax.Array):
        x = clean_input(batch, keys, latent_normalization)
        t, noise, drop = draw_training_noise(keys, x.shape[1:], time_weighting=time_weighting,
                                             class_dropout_prob=class_dropout_prob, path=path)
        labels = jnp.where(drop, model.num_classes, batch["label"])
        x_t, v_target = interpolant(x, noise, t)
        if alignment is None:
            v_pred = model.apply({"params": params["sit"]}, x_t, t, labels)
        else:
            v_pred, hidden = model.apply({"params": params["sit"]}, x_t, t, labels, hidden_at=alignment.depth)
        loss = flow_matching_loss(v_pred, v_target)
        metrics = {"flow_loss": loss}
        if alignment is not None:
            align_loss, align_metrics = alignment(params["projector"], hidden, batch["align_target"], step)
            loss = loss + align_loss
            metrics.update(align_metrics)
        return loss, metrics

    return loss_fn

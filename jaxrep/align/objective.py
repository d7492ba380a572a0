"""REPA / iREPA / ERW as terms of the SiT training objective.

- `AlignmentTerm`: lambda(s) * L_REPA(h_phi(h_k), y*) (REPA Sec. 3.2; `sihyun-yu/REPA:loss.py` SILoss), the
  optional term of `jaxrep.diffusion.objective.make_diffusion_loss`: one forward pass gives the velocity
  and the hidden state h_k after block `depth`, so both losses share x_t, t and the dropped labels.
  lambda is a constant (REPA 0.5, iREPA 1.0) or ERW's decaying schedule of the traced step.
- `make_projector`: REPA's MLP projector (repa, erw) or iREPA's 3x3 conv projector (irepa).
- `make_erw_warmup_loss`: ERW phase 1 (Liu et al. 2025, Sec. 3; `LINs-lab/ERW:loss.py` forward_warmup):
  the L2R model (the first blocks and the embedders) reads the clean input at t = 0 and its projected
  output is pulled to the targets; no diffusion loss.

The targets y* (B, N, D_enc) arrive in the batch as `batch["align_target"]`, computed outside the
differentiated function by `jaxrep.align.encoder.make_target_fn`: the encoder is never in the params.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrep.align.erw import erw_alignment_weight, erw_warmup_loss
from jaxrep.align.irepa import ConvProjector
from jaxrep.align.repa import MLPProjector, repa_loss
from jaxrep.diffusion.latents import LatentNormalization, clean_input
from jaxrep.diffusion.objective import draw_training_noise
from jaxrep.nn.sit import SiT

__all__ = ["METHODS", "AlignmentTerm", "make_projector", "make_alignment_term", "make_erw_warmup_loss",
           "projected_loss"]

METHODS = ("none", "repa", "irepa", "erw")

WeightFn = Callable[[jax.Array], jax.Array]  # global step (traced int32) -> float32 scalar lambda


Projector = nn.Module | tuple[nn.Module, ...]


def projected_loss(projector: Projector, projector_params: Any, hidden: jax.Array, target: Any,
                   loss_fn: Callable[[jax.Array, jax.Array], jax.Array] = repa_loss) -> jax.Array:
    """loss_fn(projector(h), target), averaged over the target encoders when there are several.

    One encoder: `projector` a module, `projector_params` its params, `target` (B, N, D_enc). Several (REPA's
    SILoss with a list of encoders, `sihyun-yu/REPA:loss.py`: the projection loss summed over encoders and divided
    by their number): tuples of modules, params and targets, one per encoder, each with its own projector.
    """
    if not isinstance(projector, tuple):
        return loss_fn(projector.apply({"params": projector_params}, hidden), target)
    losses = [loss_fn(module.apply({"params": params}, hidden), y)
              for module, params, y in zip(projector, projector_params, target, strict=True)]
    return sum(losses) / len(losses)


@dataclasses.dataclass(frozen=True)
class AlignmentTerm:
    """lambda(step) * L_REPA(projector(h_depth), target), averaged over encoders (`projected_loss`).

    Attributes:
      projector: maps SiT tokens (B, N, D) to encoder width (B, N, D_enc); params under params["projector"];
        a tuple of projectors (params a tuple) for several target encoders.
      depth: 1-based SiT block whose output h_depth is aligned.
      weight: lambda as a function of the global step.
    """

    projector: Projector
    depth: int
    weight: WeightFn

    def __call__(self, projector_params: Any, hidden: jax.Array, target: Any,
                 step: jax.Array) -> tuple[jax.Array, dict]:
        """hidden: (B, N, D); target: (B, N, D_enc) or a tuple of them. Returns (weighted loss, {"align_loss",
        "align_weight"})."""
        align_loss = projected_loss(self.projector, projector_params, hidden, target)
        weight = jnp.asarray(self.weight(step), jnp.float32)
        return weight * align_loss, {"align_loss": align_loss, "align_weight": weight}


def make_projector(method: str, *, out_dim: int, hidden_dim: int = 2048, kernel_size: int = 3,
                   grid_hw: tuple[int, int] | None = None, dtype: Any = jnp.float32) -> nn.Module:
    """REPA's MLP projector for "repa"/"erw", iREPA's conv projector on the token grid for "irepa"."""
    if method in ("repa", "erw"):
        return MLPProjector(out_dim, hidden_dim, dtype)
    if method == "irepa":
        return ConvProjector(out_dim, kernel_size, grid_hw, dtype)
    raise ValueError(f"align.method: no projector for {method!r}; choose one of {METHODS[1:]}")


def make_alignment_term(method: str, *, projector: Projector, depth: int, coef: float,
                        erw_warmup_steps: int = 0, erw_half_life: float = 50_000,
                        total_steps: int | None = None) -> AlignmentTerm:
    """The phase-2 / single-phase alignment term.

    Args:
      method: "repa" or "irepa" (constant lambda = coef), or "erw" (lambda(s) = coef * 2^(-(s - S_w) /
        half_life), clamped at total_steps; `erw_alignment_weight`).
      projector, depth: see `AlignmentTerm`.
      coef: lambda (REPA 0.5, iREPA 1.0) or ERW's c0 (6.0 for SiT-XL/2, `erw_initial_weight`).
      erw_warmup_steps, erw_half_life, total_steps: the ERW schedule's S_w, half-life and S_max.
    """
    if method in ("repa", "irepa"):
        weight = lambda step: jnp.float32(coef)  # noqa: E731
    elif method == "erw":
        weight = lambda step: erw_alignment_weight(  # noqa: E731
            step, warmup_steps=erw_warmup_steps, initial=coef, half_life=erw_half_life, max_steps=total_steps)
    else:
        raise ValueError(f"align.method: no alignment term for {method!r}; choose one of {METHODS[1:]}")
    return AlignmentTerm(projector, depth, weight)


def make_erw_warmup_loss(l2r_model: SiT, projector: Projector, *, coef: float = 0.5,
                         class_dropout_prob: float = 0.1,
                         latent_normalization: LatentNormalization = LatentNormalization(),
                         official_last_sample: bool = False):
    """ERW phase 1 as a `LossFn`: loss_fn(params, batch, keys, step) -> (loss, metrics).

    params = {"sit": params of `l2r_model` (a SiT of depth l2r_depth), "projector": ...}; batch holds the
    clean "image" (B, H, W, C), "label" (B,) and "align_target" (B, N, D_enc). The model reads the clean
    input at t = 0 with the usual label dropout; loss = coef * erw_warmup_loss(projector(h_L2R), target), averaged
    over the target encoders when `projector` is a tuple (as ERW's compute_proj_loss divides by their number)
    (coef: ERW's `--proj-coeff` 0.5; `official_last_sample`: the released code's buggy loss, see
    `erw_warmup_loss`). The SiT's final layer is computed but unused, so it gets zero
    gradient (and XLA drops it); `transplant_blocks` never copies it.
    """

    def loss_fn(params: Any, batch: dict, keys: jax.Array, step: jax.Array):
        del step
        x = clean_input(batch, keys, latent_normalization)  # a posterior sample for prepared latents
        _, _, drop = draw_training_noise(keys, x.shape[1:], time_weighting="uniform",
                                         class_dropout_prob=class_dropout_prob)
        labels = jnp.where(drop, l2r_model.num_classes, batch["label"])
        t = jnp.zeros((x.shape[0],), jnp.float32)
        _, hidden = l2r_model.apply({"params": params["sit"]}, x, t, labels, hidden_at=l2r_model.depth)
        warmup_loss = functools.partial(erw_warmup_loss, official_last_sample=official_last_sample)
        align_loss = projected_loss(projector, params["projector"], hidden, batch["align_target"], warmup_loss)
        return coef * align_loss, {"align_loss": align_loss}

    return loss_fn

"""ERW: embedded representation warmup (Liu, Sun, Li, Lin 2025, arXiv 2504.10188; code `LINs-lab/ERW` @adf125d).

Phase 1 (warmup) trains only the first `l2r_depth` = 4 SiT blocks, the x/t/y embedders and the REPA
projector on the clean latent at t = 0 to reproduce the encoder's patch tokens (`erw_warmup_loss`).
Transfer copies those parameters into a freshly initialised full SiT (`transplant_blocks`; the optimiser
state is not transferred). Phase 2 trains L_velocity + lambda(s) * L_REPA with an exponentially decaying
weight (`erw_alignment_weight`), REPA projector at block 14 for SiT-XL/2.

The pieces here are pure; which blocks run, the t = 0 input and the optimiser reset belong to the train step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxrep.align.repa import repa_loss_per_example

__all__ = [
    "erw_initial_weight",
    "erw_alignment_weight",
    "erw_warmup_loss",
    "erw_warmup_loss_per_example",
    "transplant_blocks",
]


def erw_initial_weight(model_name: str) -> float:
    """c0 of the ERW schedule by model name, as `ERW:train.py` get_dynamic_proj_coeff matches it.

    "xl" in the lower-cased name -> 6.0, else "l" -> 3.0, else 1.0 (e.g. "SiT-XL/2" 6.0, "SiT-L/2" 3.0,
    "SiT-B/2" 1.0). The paper's lambda ablation prefers 4.0 for XL; the code's 6.0 is the default here.
    """
    name = model_name.lower()
    if "xl" in name:
        return 6.0
    if "l" in name:
        return 3.0
    return 1.0


def erw_alignment_weight(
    step: jax.Array | int,
    *,
    warmup_steps: int,
    initial: float = 6.0,
    half_life: float = 50_000,
    max_steps: int | None = None,
) -> jax.Array:
    """Phase-2 REPA weight lambda(s) = initial * 2 ** (-(s - S_w) / half_life) (ERW's decaying
    alignment weight; code `ERW:train.py` get_dynamic_proj_coeff).

    As in the code, the decay stops at max_steps: the exponent uses min(s - S_w, S_max - S_w). Before
    the warmup ends (s < S_w) the weight is 0 here: phase 2 has not started and the warmup uses its own
    loss; the released code would return `initial` there but never uses it during warmup.

    Args:
      step: global step s (phase 1 counts), int or traced scalar.
      warmup_steps: S_w, the step phase 2 starts at.
      initial: c0 (6.0 for SiT-XL/2, see `erw_initial_weight`).
      half_life: steps for the weight to halve (50K).
      max_steps: S_max, total training steps; None means no clamp.

    Returns:
      float32 scalar.
    """
    if half_life <= 0:
        raise ValueError(f"half_life must be positive, got {half_life}")
    if max_steps is not None and max_steps < warmup_steps:
        raise ValueError(f"max_steps ({max_steps}) is smaller than warmup_steps ({warmup_steps})")
    step = jnp.asarray(step, jnp.float32)
    elapsed = step - warmup_steps
    if max_steps is not None:
        elapsed = jnp.minimum(elapsed, float(max_steps - warmup_steps))
    weight = initial * jnp.exp2(-jnp.maximum(elapsed, 0.0) / half_life)
    return jnp.where(step >= warmup_steps, weight, 0.0).astype(jnp.float32)


def erw_warmup_loss_per_example(projected: jax.Array, target: jax.Array, *,
                                official_last_sample: bool = False) -> jax.Array:
    """`erw_warmup_loss` per example, (B,): `repa_loss_per_example`; with `official_last_sample`, zero for every
    example but the last, whose value is its own, so the batch mean is the released code's last-sample / B."""
    losses = repa_loss_per_example(projected, target)
    if official_last_sample:
        return jnp.where(jnp.arange(losses.shape[0]) == losses.shape[0] - 1, losses, 0.0)
    return losses


def erw_warmup_loss(projected: jax.Array, target: jax.Array, *, official_last_sample: bool = False) -> jax.Array:
    """Phase-1 alignment loss: batch mean of the per-token negative cosine (= `repa_loss`).

    Default (fixed): every sample counts. The released `ERW:loss.py` compute_proj_loss has a bug: its per-sample
    loop only normalises the targets and the accumulation sits after the loop, so its loss is -mean_n cos of the
    *last* sample of the (per-device) batch divided by B: 1/B of the intended scale, one sample of signal.
    `official_last_sample=True` reproduces that released behaviour (for comparisons with ERW's checkpoints); under
    `jax.jit` on a global batch "last" is the global batch's last example, under `shard_map` the device's. The code
    multiplies by `--proj-coeff` 0.5 outside; so does the caller.

    Args:
      projected: projector output on the clean latent at t = 0, (B, N, D).
      target: encoder patch tokens, (B, N, D); no gradient flows into it.
      official_last_sample: reproduce the released code's last-sample / B loss.

    Returns:
      float32 scalar in [-1, 1] ([-1/B, 1/B] with `official_last_sample`).
    """
    return jnp.mean(erw_warmup_loss_per_example(projected, target, official_last_sample=official_last_sample))


_EMBEDDERS = ("x_embedder", "t_embedder", "y_embedder")


def _leaf_specs(tree: Any) -> list[tuple[str, tuple[int, ...], Any]]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(jax.tree_util.keystr(path), jnp.shape(leaf), jnp.result_type(leaf)) for path, leaf in leaves]


def transplant_blocks(
    warmup_params: Mapping[str, Any],
    fresh_params: Mapping[str, Any],
    *,
    num_blocks: int,
    extra_keys: Sequence[str] = (),
) -> dict[str, Any]:
    """Embeds warmed-up L2R parameters into a fresh SiT params tree (ERW transfer).

    Copies `x_embedder`, `t_embedder`, `y_embedder`, `blocks_0` ... `blocks_{num_blocks-1}` and any
    `extra_keys` subtrees from `warmup_params`; every other entry (later blocks, `final_layer`) keeps its
    fresh value. This is what `ERW:train.py` does with `load_state_dict(warmup['model'], strict=False)`,
    made explicit and checked. ERW also carries over the REPA projector: `jaxrep.nn.sit.SiT` keeps it
    outside its params, so reuse the warmup projector params as they are (or name their key in
    `extra_keys` if they sit in the same tree).

    Args:
      warmup_params: phase-1 params (top-level keys as in `jaxrep.nn.sit`), at least num_blocks blocks.
      fresh_params: freshly initialised full-depth params.
      num_blocks: L2R depth (4 in ERW).
      extra_keys: further top-level subtrees to copy, e.g. ("projector",).

    Returns:
      a new dict; the inputs are not modified (copied subtrees are shared, not duplicated).

    Raises:
      KeyError: a key to copy is missing from either tree.
      ValueError: num_blocks < 1, or a copied subtree differs in structure, shape or dtype.
    """
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be at least 1, got {num_blocks}")
    if "params" in warmup_params or "params" in fresh_params:
        raise KeyError("pass the `params` collection itself (variables['params']), not the variables dict")
    keys = [*_EMBEDDERS, *(f"blocks_{index}" for index in range(num_blocks)), *extra_keys]
    for name, tree in (("warmup_params", warmup_params), ("fresh_params", fresh_params)):
        missing = [key for key in keys if key not in tree]
        if missing:
            raise KeyError(f"transplant_blocks: {name} lacks {missing}; it has {sorted(tree)}")
    differing = [key for key in keys if _leaf_specs(warmup_params[key]) != _leaf_specs(fresh_params[key])]
    if differing:
        raise ValueError(
            f"transplant_blocks: {differing} differ between the warmup and the fresh params (structure, "
            f"shapes or dtypes); the two models must share width, heads and patch size")
    return {**fresh_params, **{key: warmup_params[key] for key in keys}}

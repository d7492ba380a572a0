"""Loading the projectors of official REPA / iREPA / ERW checkpoints into jaxrep's `MLPProjector` / `ConvProjector`.

Key layouts: REPA/ERW `projectors.k.{0,2,4}` (REPA's build_mlp: Linear, SiLU, Linear, SiLU, Linear), iREPA
`projectors.k.projection_layer.{0,2,4}` (type "mlp") or `projectors.k.projection_layer` (type "conv", a Conv2d with
padding k // 2 on the row-major token grid); one projector per target encoder (REPA's `--enc-type` may list
several). Files are read with `jaxrep.weights.convert_sit.read_sit_checkpoint`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxrep.align.irepa import ConvProjector
from jaxrep.align.repa import MLPProjector
from jaxrep.weights.convert import CheckpointMismatchError, match_params
from jaxrep.weights.convert_sit import canonical_names

__all__ = ["projector_from_state_dict", "projector_params_from_state_dict"]


def _projector_keys(names: Mapping[str, np.ndarray], index: int) -> tuple[str, dict[str, np.ndarray]]:
    """(kind, {suffix: value}) of projector `index`: kind "mlp" ({0,2,4}.{weight,bias}) or "conv"."""
    for prefix in (f"projectors.{index}.projection_layer.", f"projectors.{index}."):
        found = {name[len(prefix):]: value for name, value in names.items() if name.startswith(prefix)}
        if found:
            break
    else:
        available = sorted({name.split(".")[1] for name in names if name.startswith("projectors.")})
        raise CheckpointMismatchError(f"checkpoint has no projector {index} (projectors present: {available or 'none'}"
                                      "; iREPA eval-mode and sampling-only files have none)")
    if "weight" in found:  # iREPA's single-layer projectors
        if found["weight"].ndim != 4:
            raise CheckpointMismatchError(
                f"projectors.{index}: a linear projector (iREPA projection_layer_type 'linear'), not supported "
                "by jaxrep's projectors (MLPProjector, ConvProjector)")
        return "conv", found
    return "mlp", found


def projector_from_state_dict(state_dict: Mapping[str, Any], index: int = 0,
                              grid_hw: tuple[int, int] | None = None) -> nn.Module:
    """The jaxrep projector module the checkpoint's projector `index` fits: `MLPProjector(out_dim, hidden_dim)`
    (REPA build_mlp) or `ConvProjector(out_dim, kernel_size, grid_hw)` (iREPA conv)."""
    kind, found = _projector_keys(canonical_names(state_dict), index)
    if kind == "conv":
        out_dim, _, kernel_size, _ = found["weight"].shape
        return ConvProjector(int(out_dim), int(kernel_size), grid_hw)
    if "0.weight" not in found or "4.weight" not in found:
        raise CheckpointMismatchError(f"projectors.{index}: expected build_mlp keys 0/2/4, got {sorted(found)}")
    return MLPProjector(int(found["4.weight"].shape[0]), int(found["0.weight"].shape[0]))


_MLP_LAYERS = {"0": "Dense_0", "2": "Dense_1", "4": "Dense_2"}  # build_mlp's Linear indices -> MLPProjector


def _projector_key_to_flax(kind: str, suffix: str, value: np.ndarray):
    """One projector key (without its `projectors.k.` prefix) -> (Flax path, value), or None if unknown."""
    if kind == "conv":
        if suffix == "weight":  # Conv2d OIHW -> Flax HWIO
            return ("conv", "kernel"), value.transpose(2, 3, 1, 0)
        return (("conv", "bias"), value) if suffix == "bias" else None
    layer, _, part = suffix.partition(".")
    if layer not in _MLP_LAYERS or part not in ("weight", "bias"):
        return None
    return ((_MLP_LAYERS[layer], "kernel"), value.T) if part == "weight" else ((_MLP_LAYERS[layer], "bias"), value)


def projector_params_from_state_dict(state_dict: Mapping[str, Any], projector: nn.Module, *, hidden_size: int,
                                     index: int = 0) -> dict:
    """Converts projector `index` of an official checkpoint into the params of `projector`.

    Args:
      state_dict: official SiT state dict (REPA/ERW `projectors.k.{0,2,4}`, iREPA `projectors.k.projection_layer`).
      projector: an `MLPProjector` (REPA, ERW, iREPA type "mlp") or a `ConvProjector` (iREPA type "conv").
      hidden_size: width D of the SiT tokens the projector reads.
      index: which projector (one per target encoder; REPA's `--enc-type` may list several).

    Returns:
      nested float32 NumPy params: `projector.apply({"params": params}, tokens (B, N, D))`.

    Raises:
      CheckpointMismatchError: no such projector, a kind that does not fit `projector`, or shape mismatches.
    """
    kind, found = _projector_keys(canonical_names(state_dict), index)
    prefix = f"projectors.{index}"
    if isinstance(projector, ConvProjector):
        grid = tuple(projector.grid_hw) if projector.grid_hw is not None else (1, 1)
        expected_kind, tokens = "conv", (1, grid[0] * grid[1], hidden_size)
    elif isinstance(projector, MLPProjector):
        expected_kind, tokens = "mlp", (1, 1, hidden_size)
    else:
        raise TypeError(f"projector: expected MLPProjector or ConvProjector, got {type(projector).__name__}")
    if kind != expected_kind:
        raise CheckpointMismatchError(f"{prefix} is {'an MLP' if kind == 'mlp' else 'a conv'} projector; the "
                                      f"model's projector is an {type(projector).__name__}")
    variables = jax.eval_shape(projector.init, jax.random.key(0), jax.ShapeDtypeStruct(tokens, jnp.float32))
    expected = {path: leaf.shape for path, leaf in traverse_util.flatten_dict(variables["params"]).items()}
    params = match_params(((f"{prefix}.{suffix}", value) for suffix, value in found.items()), expected,
                          lambda name, value: _projector_key_to_flax(kind, name[len(prefix) + 1:], value),
                          header=f"{prefix} does not match the {type(projector).__name__} (input width {hidden_size})")
    return traverse_util.unflatten_dict(params)

"""Loading the official REPA / iREPA / ERW SiT PyTorch checkpoints into jaxrep's Flax `SiT` and projectors.

Key layout of the official `models/sit.py` (`sihyun-yu/REPA`, `End2End-Diffusion/iREPA:ldm/models/sit.py`,
`LINs-lab/ERW`; a leading `module.` (DDP) or `_orig_mod.` (torch.compile) is stripped):
- `x_embedder.proj.{weight,bias}`: timm PatchEmbed conv, OIHW -> Flax HWIO;
- `pos_embed` (1, N, D): the fixed 2-D sin-cos buffer; checked against `sincos_2d` and dropped (optional);
- `t_embedder.mlp.{0,2}`, `y_embedder.embedding_table.weight` (num_classes + 1 rows: the last is the null
  class), `blocks.i.{attn.qkv, attn.proj, mlp.fc1, mlp.fc2, adaLN_modulation.1}`,
  `final_layer.{linear, adaLN_modulation.1}`: torch Linear (out, in) -> Flax kernel (in, out);
- REPA's `--legacy` layout (`decoder_blocks.j` = `blocks.{j + number of blocks.*}`) is renamed on the fly;
- projectors: `jaxrep.weights.convert_projector` (the SiT conversion skips `projectors.*`).

- QK-norm (`blocks.i.attn.{q,k}_norm.{weight,bias}`, timm `qk_norm=True`: `--qk-norm`, ERW's "with QK-Norm"
  `best.pt`) -> `blocks_i/attn/{q,k}_norm/{scale,bias}` of a `SiT(qk_norm=True)`;
- RoPE (`feat_rope.freqs_{cos,sin}`, ERW's `--use_rope`, on by default in ERW's train.py): fixed buffers of
  EVA-02's `VisionRotaryEmbeddingFast`, (N, head_dim); checked against `jaxrep.nn.rope.axial_rope_tables` and
  dropped, for a `SiT(use_rope=True)` (which then requires them: a file without them was trained without RoPE).
For a SiT without the option, these keys are refused with `CheckpointMismatchError` naming them.

Files: `.safetensors` (a flat state dict) or torch `.pt`/`.pth`/`.bin`, read with `torch.load(weights_only=True)`:
a bare state dict (the released REPA `last.pt`: generate.py loads it as one) or the training container
`{"model", "ema", "opt", "args", "steps"}` that REPA's / iREPA's / ERW's train.py write. That container pickles
`args`, an `argparse.Namespace`, which weights_only loading refuses; it is allowed, for that one load only, through
`torch.serialization.safe_globals([argparse.Namespace])` (a Namespace holds only the plain values of the
argument parser; any other class still makes the load fail).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxrep import files
from jaxrep.nn.rope import axial_rope_tables
from jaxrep.nn.sit import SiT, sincos_2d
from jaxrep.weights.convert import (
    CheckpointMismatchError,
    MissingWeightsError,
    UnreadableWeightsError,
    load_state_dict,
    match_params,
    read_or_explain,
)

__all__ = [
    "HEADS_BY_WIDTH",
    "SiTCheckpoint",
    "infer_sit_shape",
    "load_sit_params",
    "read_sit_checkpoint",
    "sit_params_from_state_dict",
]

# Heads are not visible in the weights: the SiT presets' head count by width (S, B, L, XL).
HEADS_BY_WIDTH = {384: 6, 768: 12, 1024: 16, 1152: 16}
WEIGHTS = ("ema", "model")
_PREFIXES = ("module.", "_orig_mod.")
# Architecture options of the official code that a SiT has only when built with them:
# name -> (SiT field, key pattern).
_OPTIONS = {
    "QK-norm (timm Attention qk_norm=True)": ("qk_norm", re.compile(r"^blocks\.\d+\.attn\.(q_norm|k_norm)\.")),
    "RoPE (ERW --use_rope)": ("use_rope", re.compile(r"(^|\.)(feat_rope|rope)\.|^freqs_(cos|sin)$")),
}
_ROPE_BUFFERS = ("feat_rope.freqs_cos", "feat_rope.freqs_sin")
_BUFFER_ATOL = 5e-3  # fixed buffers: allows bfloat16-rounded files; another layout differs by O(1)


@dataclasses.dataclass(frozen=True)
class SiTCheckpoint:
    """What `read_sit_checkpoint` found in a file.

    Attributes:
      state_dict: flat {name: float32 or integer NumPy array}, the chosen weights.
      weights: "ema" or "model" (the container entry taken), or "bare" (the file is a state dict).
      step: the container's `steps` (optimizer steps trained), or None.
      args: `vars(args)` of the training run's argparse.Namespace, or None.
    """

    state_dict: dict[str, np.ndarray]
    weights: str
    step: int | None = None
    args: dict | None = None


def _to_numpy(name: str, value: Any) -> np.ndarray:
    import torch

    if not isinstance(value, torch.Tensor):
        raise CheckpointMismatchError(f"state-dict entry {name!r} is a {type(value).__name__}, not a tensor")
    value = value.detach()
    return (value.float() if value.is_floating_point() else value).numpy()


def _is_state_dict(value: Any) -> bool:
    import torch

    return isinstance(value, Mapping) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def read_sit_checkpoint(path: str | os.PathLike, weights: str = "ema") -> SiTCheckpoint:
    """Reads a SiT checkpoint file without running pickled code (module docstring for the formats).

    Args:
      path: `.safetensors` or torch `.pt`/`.pth`/`.bin`.
      weights: container entry to take: "ema" (what REPA's generate.py samples) or "model" (the raw weights).
        A bare state dict is taken as it is, whatever `weights` says.

    Raises:
      FileNotFoundError: no such file.
      UnreadableWeightsError: an unknown extension, or a file weights_only loading cannot read (corrupt, or
        pickling a class other than argparse.Namespace).
      CheckpointMismatchError: the file holds neither a state dict nor a container with `weights`.
    """
    path = os.fspath(path)
    if weights not in WEIGHTS:
        raise ValueError(f"weights: must be one of {WEIGHTS}, got {weights!r}")
    if not files.path(path).is_file():
        raise MissingWeightsError(f"no checkpoint file at {path!r}")
    path = files.local_copy(path)
    if path.endswith(".safetensors"):
        return SiTCheckpoint(load_state_dict(path), "bare")
    if not path.endswith((".pt", ".pth", ".bin")):
        raise UnreadableWeightsError(f"{path}: unsupported checkpoint extension (use .safetensors, .pt, .pth "
                                        "or .bin)")
    import torch

    def read(file):
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(file, map_location="cpu", weights_only=True)

    loaded = read_or_explain(path, read, "tensors, plain containers and the training args' argparse.Namespace")
    if _is_state_dict(loaded):
        return SiTCheckpoint({name: _to_numpy(name, value) for name, value in loaded.items()}, "bare")
    if not isinstance(loaded, Mapping) or not any(key in loaded for key in WEIGHTS):
        keys = sorted(map(str, loaded)) if isinstance(loaded, Mapping) else type(loaded).__name__
        raise CheckpointMismatchError(
            f"{path}: neither a state dict nor a training container with 'ema'/'model' (found {keys})")
    if not _is_state_dict(loaded.get(weights)):
        raise CheckpointMismatchError(
            f"{path}: the container has no {weights!r} state dict (entries: {sorted(map(str, loaded))}); "
            f"choose weights from {[key for key in WEIGHTS if _is_state_dict(loaded.get(key))]}")
    state_dict = {name: _to_numpy(name, value) for name, value in loaded[weights].items()}
    args = loaded.get("args")
    step = loaded.get("steps")
    return SiTCheckpoint(state_dict, weights, None if step is None else int(step),
                         vars(args) if isinstance(args, argparse.Namespace) else None)


def canonical_names(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Strips wrapper prefixes and renames REPA's legacy `decoder_blocks.j` to `blocks.{j + encoder blocks}`."""
    renamed = {}
    for name, value in state_dict.items():
        while name.startswith(_PREFIXES):
            name = name.split(".", 1)[1]
        renamed[name] = np.asarray(value)
    encoder_blocks = _block_count(renamed)
    legacy = re.compile(r"^decoder_blocks\.(\d+)\.(.+)$")
    for name in [name for name in renamed if legacy.match(name)]:
        index, rest = legacy.match(name).groups()
        renamed[f"blocks.{int(index) + encoder_blocks}.{rest}"] = renamed.pop(name)
    return renamed


def _block_count(names) -> int:
    indices = {int(match.group(1)) for match in map(re.compile(r"^blocks\.(\d+)\.").match, names) if match}
    return max(indices) + 1 if indices else 0


def _sit_key_to_flax(name: str, value: np.ndarray):
    """One official SiT key -> (Flax path, value in Flax layout), or None for a key the SiT does not have."""
    if name == "x_embedder.proj.weight":  # (D, C, p, p) -> (p, p, C, D)
        return ("x_embedder", "kernel"), value.transpose(2, 3, 1, 0)
    if name == "x_embedder.proj.bias":
        return ("x_embedder", "bias"), value
    if name == "y_embedder.embedding_table.weight":
        return ("y_embedder", "embedding"), value
    qk_norm = re.fullmatch(r"blocks\.(\d+)\.attn\.(q_norm|k_norm)\.(weight|bias)", name)
    if qk_norm:  # torch LayerNorm weight -> Flax scale (no transpose)
        index, norm, kind = qk_norm.groups()
        return (f"blocks_{index}", "attn", norm, "scale" if kind == "weight" else "bias"), value
    patterns = [
        (r"t_embedder\.mlp\.([02])\.(weight|bias)", lambda m: ("t_embedder", f"mlp_{m[1]}")),
        (r"blocks\.(\d+)\.attn\.(qkv|proj)\.(weight|bias)", lambda m: (f"blocks_{m[1]}", "attn", m[2])),
        (r"blocks\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", lambda m: (f"blocks_{m[1]}", m[2])),
        (r"blocks\.(\d+)\.adaLN_modulation\.1\.(weight|bias)", lambda m: (f"blocks_{m[1]}", "adaLN_modulation")),
        (r"final_layer\.linear\.(weight|bias)", lambda m: ("final_layer", "linear")),
        (r"final_layer\.adaLN_modulation\.1\.(weight|bias)", lambda m: ("final_layer", "adaLN_modulation")),
    ]
    for pattern, path in patterns:
        match = re.fullmatch(pattern, name)
        if match:
            kind = match.groups()[-1]
            return ((*path(match), "kernel"), value.T) if kind == "weight" else ((*path(match), "bias"), value)
    return None


def _expected_sit_shapes(model: SiT) -> dict[tuple[str, ...], tuple[int, ...]]:
    x = jax.ShapeDtypeStruct((1, model.input_size, model.input_size, model.in_channels), jnp.float32)
    t, y = jax.ShapeDtypeStruct((1,), jnp.float32), jax.ShapeDtypeStruct((1,), jnp.int32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x, t, y)
    return {path: leaf.shape for path, leaf in traverse_util.flatten_dict(variables["params"]).items()}


def _unsupported(names, model: SiT) -> dict[str, list[str]]:
    """{option: its keys} for the options in the checkpoint that `model` is built without."""
    found = {}
    for option, (field, pattern) in _OPTIONS.items():
        if getattr(model, field):
            continue
        keys = sorted(name for name in names if pattern.search(name))
        if keys:
            found[option] = keys
    return found


def _check_pos_embed(value: np.ndarray, model: SiT) -> str | None:
    """None if `value` is the SiT's fixed sin-cos embedding, else why not."""
    expected = sincos_2d(model.hidden_size, model.grid_size, model.grid_size)[None]
    if value.shape != expected.shape:
        return (f"pos_embed {value.shape}: model expects {expected.shape} (token grid "
                f"{model.grid_size}x{model.grid_size}; input_size = grid * patch_size)")
    error = float(np.max(np.abs(value - expected)))
    if error > _BUFFER_ATOL:
        return (f"pos_embed differs from the fixed 2-D sin-cos embedding by up to {error:.3g}: a different "
                f"(learned or re-laid-out) position embedding, i.e. a different model")
    return None


def _check_rope_buffers(names: Mapping[str, np.ndarray], model: SiT) -> list[str]:
    """Why the checkpoint's RoPE buffers do not fit `model` (use_rope=True), or [] if they do."""
    absent = [name for name in _ROPE_BUFFERS if name not in names]
    if absent:
        return [f"model has use_rope=True but the checkpoint has no {absent} (trained without RoPE?)"]
    problems = []
    tables = axial_rope_tables(model.hidden_size // model.num_heads, model.grid_size, model.grid_size)
    for name, expected in zip(_ROPE_BUFFERS, tables):
        value = names[name]
        if value.shape != expected.shape:
            problems.append(f"{name} {value.shape}: model expects {expected.shape} (tokens "
                            f"{model.grid_size}x{model.grid_size}, head_dim {model.hidden_size // model.num_heads})")
            continue
        error = float(np.max(np.abs(value - expected)))
        if error > _BUFFER_ATOL:
            problems.append(f"{name} differs from the 2-D axial RoPE table (jaxrep.nn.rope) by up to {error:.3g}: "
                            "another frequency layout, i.e. a different model")
    return problems


def sit_params_from_state_dict(state_dict: Mapping[str, Any], model: SiT) -> dict:
    """Converts an official REPA / iREPA / ERW SiT state dict into the `params` of `model`.

    Args:
      state_dict: {name: array-like}, e.g. `read_sit_checkpoint(path).state_dict` or a torch `state_dict()`.
        Projector keys (`projectors.*`) are skipped here (`projector_params_from_state_dict`).
      model: the SiT that will consume the params; every shape is checked (see `infer_sit_shape`).

    Returns:
      nested dict of float32 NumPy arrays, the tree `model.init` builds: `model.apply({"params": params},
      x, t, y)`.

    Raises:
      CheckpointMismatchError: architecture options the model is built without, unexpected, missing or
        mis-shaped keys, a pos_embed that is not the fixed sin-cos one, or RoPE buffers absent or not the
        model's table (all listed).
    """
    names = canonical_names(state_dict)
    unsupported = _unsupported(names, model)
    skipped = {key for keys in unsupported.values() for key in keys} | {"pos_embed"}
    notes = [problem] if "pos_embed" in names and (problem := _check_pos_embed(names["pos_embed"], model)) else []
    if model.use_rope:
        notes += _check_rope_buffers(names, model)
        skipped |= set(_ROPE_BUFFERS)
    depth = _block_count(names)
    if depth != model.depth:
        notes.append(f"checkpoint has {depth} blocks, model has {model.depth}")
    header = (f"checkpoint does not match the SiT (input_size={model.input_size}, patch_size={model.patch_size}, "
              f"in_channels={model.in_channels}, hidden_size={model.hidden_size}, depth={model.depth}, "
              f"mlp_ratio={model.mlp_ratio}, num_classes={model.num_classes}, use_rope={model.use_rope}, "
              f"qk_norm={model.qk_norm})")
    problems = [(f"architecture option the SiT is built without: {option} (set SiT.{_OPTIONS[option][0]}=True); "
                 "keys", keys) for option, keys in unsupported.items()]
    entries = ((name, value) for name, value in names.items()
               if name not in skipped and not name.startswith("projectors."))
    params = match_params(entries, _expected_sit_shapes(model), _sit_key_to_flax, header=header, problems=problems,
                          notes=notes)
    return traverse_util.unflatten_dict(params)


def infer_sit_shape(state_dict: Mapping[str, Any], num_heads: int | None = None) -> dict:
    """The `SiT` keyword arguments a state dict implies.

    Depth, width, patch size, input channels, MLP ratio, class count, qk_norm (`q_norm` keys) and use_rope
    (`feat_rope` buffers) come from the weights; input_size
    from the `pos_embed` token count (omitted when the file has no pos_embed); heads are not in the weights:
    `num_heads`, else the preset head count for the width (`HEADS_BY_WIDTH`).

    Raises:
      CheckpointMismatchError: the patch embedding or the label table is missing.
      ValueError: a width outside the presets without `num_heads`.
    """
    names = canonical_names(state_dict)
    required = ("x_embedder.proj.weight", "y_embedder.embedding_table.weight")
    absent = [name for name in required if name not in names]
    if absent:
        raise CheckpointMismatchError(f"not an official SiT state dict: no {absent}")
    hidden_size, in_channels, patch_size, _ = names["x_embedder.proj.weight"].shape
    if num_heads is None:
        if hidden_size not in HEADS_BY_WIDTH:
            raise ValueError(f"num_heads: width {hidden_size} is not a SiT preset width {sorted(HEADS_BY_WIDTH)}; "
                             "the head count is not stored in the weights, pass it")
        num_heads = HEADS_BY_WIDTH[hidden_size]
    shape = dict(patch_size=int(patch_size), in_channels=int(in_channels), hidden_size=int(hidden_size),
                 depth=_block_count(names), num_heads=int(num_heads),
                 num_classes=int(names["y_embedder.embedding_table.weight"].shape[0]) - 1,
                 qk_norm="blocks.0.attn.q_norm.weight" in names, use_rope=_ROPE_BUFFERS[0] in names)
    if "blocks.0.mlp.fc1.weight" in names:
        shape["mlp_ratio"] = names["blocks.0.mlp.fc1.weight"].shape[0] / hidden_size
    if "pos_embed" in names:
        grid = math.isqrt(names["pos_embed"].shape[-2])
        shape["input_size"] = grid * int(patch_size)
    return shape


def load_sit_params(path: str | os.PathLike, model: SiT, weights: str = "ema") -> dict:
    """`sit_params_from_state_dict(read_sit_checkpoint(path, weights).state_dict, model)`."""
    return sit_params_from_state_dict(read_sit_checkpoint(path, weights).state_dict, model)

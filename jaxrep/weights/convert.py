"""Loading PyTorch checkpoints into Flax params: DINOv2 (torch-hub and `transformers` layouts) -> `ViT`.

Accepted layouts (detected from the keys; a leading `dinov2.`, `dinov2_with_registers.` or `module.` is
stripped):
- torch hub `facebookresearch/dinov2`: `cls_token`, `pos_embed`, `register_tokens`, `mask_token`,
  `patch_embed.proj.*`, `blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}`
  (ViT-g: `mlp.w12`, `mlp.w3`), `norm.*`;
- `transformers` `Dinov2Model` / `Dinov2WithRegistersModel`, both the 5.x module names
  (`attention.q_proj`, `attention.o_proj`, `mlp.gate_proj`, ...) and the names stored in the hub
  `facebook/dinov2-*` files (`attention.attention.query`, `attention.output.dense`, `mlp.weights_in`, ...).
q/k/v (and SwiGLU gate/up) are fused into the hub's `qkv` (`w12`) layout. `mask_token` (used only by
DINOv2's masked pre-training) is ignored; any other unknown key, any missing parameter and any shape
mismatch raise `CheckpointMismatchError` naming the keys.

Files: `.safetensors` through `safetensors.numpy` (bfloat16 decoded with ml_dtypes; no torch needed);
`.pth`/`.pt`/`.bin` through `torch.load(..., weights_only=True)` only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import traverse_util

from jaxrep import files
from jaxrep.nn.vit import ViT

__all__ = [
    "WeightFileError",
    "MissingWeightsError",
    "UnreadableWeightsError",
    "CheckpointMismatchError",
    "match_params",
    "load_state_dict",
    "dinov2_params_from_state_dict",
    "load_dinov2_params",
]


class WeightFileError(ValueError):
    """A weight file (or frozen-weight directory) that is missing, unreadable or does not fit the model; the
    entrypoints report it in one line (`train.cli`)."""


class MissingWeightsError(WeightFileError, FileNotFoundError):
    """No weight file at the path given."""


class UnreadableWeightsError(WeightFileError, OSError):
    """A weight file that cannot be read: truncated, corrupt, or of another format."""


class CheckpointMismatchError(WeightFileError):
    """A checkpoint does not fit the model: missing, unexpected or mis-shaped parameters."""


def match_params(entries: Iterable[tuple[str, Any]], expected: Mapping[tuple[str, ...], tuple[int, ...]],
                 to_flax: Callable[[str, Any], tuple[tuple[str, ...], np.ndarray] | None], *, header: str,
                 missing_name: Callable[[tuple[str, ...]], str] = "/".join,
                 problems: Sequence[tuple[str, Sequence[str]]] = (), notes: Sequence[str] = ()) -> dict:
    """Places converted checkpoint entries at the Flax paths the model expects, checking every shape.

    Args:
      entries: (checkpoint name, array) pairs.
      expected: {Flax path: shape} of the model's params.
      to_flax: (name, array) -> (Flax path, array in Flax layout), or None for a name the model has no place for.
      header: first line of the error (which model, with its shape fields).
      missing_name: how a missing Flax path is named in the error.
      problems, notes: further (title, keys) sections and lines the caller found; any of them is an error too.
    Returns:
      the flat {path: float32 array}.
    Raises:
      CheckpointMismatchError listing every problem, unexpected, mis-shaped and missing key.
    """
    params, unexpected, mismatched, mismatched_paths = {}, [], [], set()
    for name, value in entries:
        mapped = to_flax(name, value)
        if mapped is None or mapped[0] not in expected:
            unexpected.append(name)
            continue
        path, array = mapped
        if array.shape != expected[path]:
            mismatched.append(f"{name} {np.shape(value)} -> {'/'.join(path)}: {array.shape} in Flax layout, "
                              f"model expects {expected[path]}")
            mismatched_paths.add(path)
            continue
        params[path] = np.asarray(array, np.float32)
    missing = sorted(missing_name(path) for path in expected if path not in params and path not in mismatched_paths)
    sections = [*problems, ("shape mismatch", mismatched), ("missing from checkpoint", missing),
                ("unexpected checkpoint keys", sorted(unexpected))]
    if notes or any(keys for _, keys in sections):
        lines = [header, *notes] + [f"{title}:\n  " + "\n  ".join(keys) for title, keys in sections if keys]
        raise CheckpointMismatchError("\n".join(lines))
    return params


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a flat {name: array} state dict from `.safetensors` or a torch `.pth`/`.pt`/`.bin` file.

    Torch files are read with `weights_only=True` (no pickled code runs); floating tensors (bfloat16
    included) come back as float32 NumPy arrays. A missing file raises `MissingWeightsError`, one that cannot be
    read (truncated, corrupt) `UnreadableWeightsError`, both naming the path.
    """
    path = os.fspath(path)
    if not path.endswith((".safetensors", ".pth", ".pt", ".bin")):
        raise UnreadableWeightsError(f"{path}: unsupported checkpoint extension (use .safetensors, .pth, .pt or .bin)")
    if not files.path(path).is_file():
        raise MissingWeightsError(f"no weight file at {path!r}")
    path = files.local_copy(path)
    if path.endswith(".safetensors"):
        return read_or_explain(path, _load_safetensors)
    import torch

    loaded = read_or_explain(path, lambda file: torch.load(file, map_location="cpu", weights_only=True))
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointMismatchError(
            f"{path}: expected a flat state dict of tensors, got {type(loaded).__name__}"
            " (unwrap e.g. checkpoint['model'] and save it on its own)")
    return {
        name: (tensor.detach().float() if tensor.is_floating_point() else tensor.detach()).numpy()
        for name, tensor in loaded.items()
    }


def read_or_explain(path: str, read: Callable[[str], Any], accepted: str = "tensors and plain containers") -> Any:
    """read(path), with any failure of the reader turned into one `UnreadableWeightsError` naming the file
    (safetensors' and torch's errors have no common base). A file `torch.load(weights_only=True)` refuses because
    it pickles something else than `accepted` says why; torch's advice to load it unsafely is left out."""
    try:
        return read(path)
    except Exception as error:  # noqa: BLE001 - re-raised with the path, the cause chained
        unpickler = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed global|\n\n|$)", str(error), re.S)
        reason = unpickler.group(1).strip() if unpickler else (str(error).splitlines() or [type(error).__name__])[0]
        if reason.startswith("Unsupported global"):
            raise UnreadableWeightsError(f"{path}: torch.load(weights_only=True) refuses it: {reason} "
                                         f"(only {accepted} are accepted)") from error
        raise UnreadableWeightsError(f"{path}: cannot read the weights (truncated or corrupt?): {reason}") from error


def _load_safetensors(path: str) -> dict[str, np.ndarray]:
    """safetensors.numpy, plus bfloat16 tensors (which it rejects) decoded with ml_dtypes."""
    from safetensors import safe_open

    arrays, bfloat16_names = {}, []
    with safe_open(path, framework="numpy") as file:
        for name in file.keys():
            if file.get_slice(name).get_dtype() == "BF16":
                bfloat16_names.append(name)
            else:
                value = file.get_tensor(name)
                arrays[name] = value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else value
    if bfloat16_names:  # format: u64 header size, JSON header with byte offsets, then the data
        with open(path, "rb") as file:
            header_size = int.from_bytes(file.read(8), "little")
            header = json.loads(file.read(header_size))
        data = np.memmap(path, np.uint8, mode="r", offset=8 + header_size)
        for name in bfloat16_names:
            begin, end = header[name]["data_offsets"]
            value = data[begin:end].view(ml_dtypes.bfloat16).reshape(header[name]["shape"])
            arrays[name] = value.astype(np.float32)
    return arrays


# transformers names -> torch-hub names (q/k/v and gate/up are fused afterwards).
_HF_TO_HUB = [
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.mask_token$", "mask_token"),
    (r"^embeddings\.register_tokens$", "register_tokens"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.(?:attention\.query|q_proj)\.", r"blocks.\1.attn.q."),
    (r"^encoder\.layer\.(\d+)\.attention\.(?:attention\.key|k_proj)\.", r"blocks.\1.attn.k."),
    (r"^encoder\.layer\.(\d+)\.attention\.(?:attention\.value|v_proj)\.", r"blocks.\1.attn.v."),
    (r"^encoder\.layer\.(\d+)\.attention\.(?:output\.dense|o_proj)\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.layer_scale(\d)\.lambda1$", r"blocks.\1.ls\2.gamma"),
    (r"^encoder\.layer\.(\d+)\.mlp\.weights_in\.", r"blocks.\1.mlp.w12."),
    (r"^encoder\.layer\.(\d+)\.mlp\.gate_proj\.", r"blocks.\1.mlp.gate."),
    (r"^encoder\.layer\.(\d+)\.mlp\.up_proj\.", r"blocks.\1.mlp.up."),
    (r"^encoder\.layer\.(\d+)\.mlp\.(?:weights_out|down_proj)\.", r"blocks.\1.mlp.w3."),
    (r"^encoder\.layer\.(\d+)\.", r"blocks.\1."),
    (r"^layernorm\.", "norm."),
]
_PREFIXES = ("module.", "dinov2_with_registers.", "dinov2.")
_IGNORED = ("mask_token",)
# Parts fused along the output (row) axis of a torch Linear: q|k|v -> qkv, gate|up -> w12.
_FUSED = {"attn.qkv": ("attn.q", "attn.k", "attn.v"), "mlp.w12": ("mlp.gate", "mlp.up")}


def _to_hub_names(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Strips wrapper prefixes, renames transformers keys to hub keys and fuses split projections."""
    renamed = {}
    for name, value in state_dict.items():
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
        for pattern, replacement in _HF_TO_HUB:
            name, hits = re.subn(pattern, replacement, name)
            if hits:
                break
        renamed[name] = np.asarray(value)
    for fused, parts in _FUSED.items():
        first = re.compile(rf"^blocks\.(\d+)\.{re.escape(parts[0])}\.(weight|bias)$")
        for name in list(renamed):
            match = first.match(name)
            if not match:
                continue
            block, kind = match.groups()
            keys = [f"blocks.{block}.{part}.{kind}" for part in parts]
            missing = [key for key in keys if key not in renamed]
            if missing:
                raise CheckpointMismatchError(f"cannot fuse {fused}: missing {missing}")
            renamed[f"blocks.{block}.{fused}.{kind}"] = np.concatenate([renamed.pop(k) for k in keys], 0)
    return renamed


def _hub_to_flax(name: str, value: np.ndarray) -> tuple[tuple[str, ...], np.ndarray] | None:
    """Maps one hub key to (flax path, value in Flax layout), or None for an unknown key."""
    if name in ("cls_token", "pos_embed", "register_tokens"):
        return (name,), value
    if name == "patch_embed.proj.weight":  # (D, C, p, p) -> (p, p, C, D)
        return ("patch_embed", "kernel"), value.transpose(2, 3, 1, 0)
    if name == "patch_embed.proj.bias":
        return ("patch_embed", "bias"), value
    if name in ("norm.weight", "norm.bias"):
        return ("norm", "scale" if name.endswith("weight") else "bias"), value
    match = re.fullmatch(r"blocks\.(\d+)\.(.+)", name)
    if not match:
        return None
    block, rest = f"blocks_{match.group(1)}", match.group(2)
    match = re.fullmatch(r"ls([12])\.gamma", rest)
    if match:
        return (block, f"ls{match.group(1)}"), value
    match = re.fullmatch(r"(norm1|norm2)\.(weight|bias)", rest)
    if match:
        return (block, match.group(1), "scale" if match.group(2) == "weight" else "bias"), value
    match = re.fullmatch(r"(attn|mlp)\.(qkv|proj|fc1|fc2|w12|w3)\.(weight|bias)", rest)
    if match:
        module, layer, kind = match.groups()
        if kind == "weight":  # torch Linear (out, in) -> Flax Dense kernel (in, out)
            return (block, module, layer, "kernel"), value.T
        return (block, module, layer, "bias"), value
    return None


def _expected_shapes(model: ViT) -> dict[tuple[str, ...], tuple[int, ...]]:
    side = model.patch_size * model.pos_embed_grid
    images = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), images)
    return {path: leaf.shape for path, leaf in traverse_util.flatten_dict(variables["params"]).items()}


def _block_count(hub_names) -> int:
    indices = {int(match.group(1)) for match in map(re.compile(r"^blocks\.(\d+)\.").match, hub_names) if match}
    return max(indices) + 1 if indices else 0


def dinov2_params_from_state_dict(state_dict: Mapping[str, Any], model: ViT) -> dict:
    """Converts a DINOv2 state dict (hub or transformers layout) into the `params` of `model`.

    Args:
      state_dict: {name: array-like}, e.g. from `load_state_dict` or `torch_model.state_dict()`.
      model: the `ViT` that will consume the params; its shapes are checked exactly (the head count is
        not visible in the weights: set `num_heads` right).

    Returns:
      nested dict of float32 NumPy arrays; use as `model.apply({"params": params}, images)`.

    Raises:
      CheckpointMismatchError: unknown keys, missing parameters or shape mismatches (all listed).
    """
    hub = _to_hub_names(state_dict)
    header = (f"checkpoint does not match the ViT (width={model.width}, depth={model.depth}, "
              f"heads={model.num_heads}, ffn={model.ffn}, registers={model.num_registers}, "
              f"pos_embed_grid={model.pos_embed_grid})")
    depth = _block_count(hub)
    notes = [f"checkpoint has {depth} blocks, model has {model.depth}"] if depth != model.depth else []
    params = match_params(((name, value) for name, value in hub.items() if name not in _IGNORED),
                          _expected_shapes(model), _hub_to_flax, header=header, notes=notes)
    return traverse_util.unflatten_dict(params)


def load_dinov2_params(path: str | os.PathLike, model: ViT) -> dict:
    """`dinov2_params_from_state_dict(load_state_dict(path), model)`."""
    return dinov2_params_from_state_dict(load_state_dict(path), model)

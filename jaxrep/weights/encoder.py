"""The frozen target encoder's weights: the in-repo checkpoint (`save_encoder`, read back with its architecture),
a released DINOv2 file, or a fresh random one (iREPA's control), as a `jaxrep.align.encoder.FrozenEncoder`.

Sources (`load_encoder`):
- "checkpoint": an orbax checkpoint written by `save_encoder` (`train.encoder` trains a small
  DINOv2-architecture ViT on the procedural data). Item `state` = {"params": ViT params}, item `extra` =
  {"kind": "jaxrep-encoder", "vit": the ViT's fields, "image_size": input side, ...}: the architecture
  travels with the weights and the weights are restored against it, so a file of another architecture
  fails with a message naming what differs.
- "dinov2": a released DINOv2 `.safetensors` / `.pth` (torch-hub or `transformers` layout) converted at load
  by `jaxrep.weights.convert`; the position embedding is resampled once to the input grid, as REPA's
  `load_encoders` does (37 x 37 -> 16 x 16 for 224-px inputs).
- "random": the in-repo checkpoint's architecture with fresh weights; "hog": parameter-free HOG cells
  (`jaxrep.align.hog`). Both are iREPA's controls: spatial structure without learned knowledge.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp

from jaxrep.align.encoder import FrozenEncoder
from jaxrep.align.hog import HOG
from jaxrep.nn.vit import ViT, resample_pos_embed, vit_preset
from jaxrep.weights import hub
from jaxrep.weights.convert import WeightFileError, load_dinov2_params
from jaxrep.weights.frozen import FrozenWeightsError, read_frozen_metadata, restore_frozen_params, save_frozen

SOURCES = ("checkpoint", "random", "dinov2", "hog")  # `load_encoder`'s sources

__all__ = ["ENCODER_KIND", "SOURCES", "EncoderFileError", "abstract_encoder", "load_encoder", "read_encoder_metadata",
           "save_encoder"]

ENCODER_KIND = "jaxrep-encoder"


# ViT fields stored in the checkpoint (everything that shapes the parameters or the forward pass).
_VIT_FIELDS = ("width", "depth", "num_heads", "patch_size", "mlp_ratio", "ffn", "num_registers",
               "pos_embed_grid", "pos_embed_antialias", "layerscale_init", "layer_norm_eps")


class EncoderFileError(WeightFileError):
    """An encoder path that is missing, not an encoder checkpoint, or of another architecture."""


def save_encoder(directory: str | os.PathLike, model: ViT, params: Any, *, image_size: int,
                 info: dict | None = None) -> None:
    """Writes an in-repo encoder checkpoint (params + architecture + `info`) to `directory` (orbax)."""
    save_frozen(directory, params, {"kind": ENCODER_KIND, "vit": {name: getattr(model, name) for name in _VIT_FIELDS},
                                    "image_size": int(image_size), "info": info or {}})


def read_encoder_metadata(directory: str | os.PathLike) -> dict:
    """The architecture and info recorded next to an in-repo encoder's weights."""
    try:
        return read_frozen_metadata(directory, ENCODER_KIND, what="encoder", writer="train/encoder.py",
                                    other_kind_hint="; a DINOv2 file needs align.encoder.source='dinov2'")
    except FrozenWeightsError as error:
        raise EncoderFileError(f"align.encoder.path: {error}") from error


def _load_checkpoint(directory: str) -> FrozenEncoder:
    metadata = read_encoder_metadata(directory)
    model = ViT(**metadata["vit"])
    image_size = int(metadata["image_size"])
    try:
        params = restore_frozen_params(directory, model, (1, image_size, image_size, 3))
    except FrozenWeightsError as error:
        raise EncoderFileError(f"align.encoder.path: {error} ({metadata['vit']})") from error
    return FrozenEncoder(model, params, image_size, metadata)


def _load_dinov2(path: str, preset: str, image_size: int) -> FrozenEncoder:
    path = hub.resolve(path, field="align.encoder.path", files=("model.safetensors",))
    if os.path.isdir(path):  # a transformers checkpoint folder (a hub snapshot)
        path = os.path.join(path, "model.safetensors")
    if not os.path.isfile(path):
        raise EncoderFileError(f"align.encoder.path: no DINOv2 weights file at {path!r} (see docs/dinov2.md)")
    native = vit_preset(preset)
    if image_size % native.patch_size:
        raise EncoderFileError(f"align.encoder.image_size: {image_size} is not a multiple of the DINOv2 "
                               f"patch size {native.patch_size}")
    try:
        params = load_dinov2_params(path, native)
    except WeightFileError as error:  # unreadable, or of another architecture
        raise EncoderFileError(f"align.encoder.path: {path!r} is not a DINOv2 {preset} file: {error}") from error
    grid = image_size // native.patch_size
    params = jax.device_get(resample_pos_embed(params, (grid, grid)))
    return FrozenEncoder(native.clone(pos_embed_grid=grid), params, image_size)


def load_encoder(source: str, path: str, *, preset: str = "B/14", image_size: int = 0, cell_size: int = 0,
                 dtype: Any = jnp.float32) -> FrozenEncoder:
    """Builds the frozen encoder.

    Args:
      source: "checkpoint" (in-repo orbax encoder; architecture from its metadata), "random" (the architecture
        of the checkpoint at `path` with freshly initialised weights, seed 0: the control of iREPA's finding that
        spatial structure, not knowledge, drives the gain), "dinov2" or "hog" (`jaxrep.align.hog.HOG`).
      path: the checkpoint directory or the DINOv2 weights file; unused for "hog".
      preset: DINOv2 ViT preset of the file ("S/14", "B/14", "L/14", "g/14"); unused for checkpoints.
      image_size: encoder input side; 0 means the size the checkpoint was trained at, or 224 for DINOv2
        (REPA: 16 x 16 patch tokens); required for "hog".
      cell_size: HOG cell side in pixels (one token per cell); "hog" only.
      dtype: activation dtype of the encoder's forward pass (bfloat16 for mixed precision); its params stay
        float32 and its tokens are returned in float32.

    Raises:
      EncoderFileError: missing path, not an encoder checkpoint, or weights of another architecture.
    """
    if source in ("checkpoint", "random"):
        encoder = _load_checkpoint(os.fspath(path))
        if source == "random":
            side = encoder.image_size
            params = encoder.model.init(jax.random.key(0), jnp.zeros((1, side, side, 3)))["params"]
            encoder = dataclasses.replace(encoder, params=params, metadata={**encoder.metadata, "random_init": 0})
        if image_size and image_size != encoder.image_size:
            if image_size % encoder.model.patch_size:
                raise EncoderFileError(f"align.encoder.image_size: {image_size} is not a multiple of the "
                                       f"encoder patch size {encoder.model.patch_size}")
            encoder = dataclasses.replace(encoder, image_size=image_size)
    elif source == "dinov2":
        encoder = _load_dinov2(os.fspath(path), preset, image_size or 224)
    elif source == "hog":
        if not (image_size > 0 and cell_size > 0 and image_size % cell_size == 0):
            raise ValueError(f"align.encoder: HOG needs a cell size dividing the image size, got cells of "
                             f"{cell_size} on {image_size}-px images")
        encoder = FrozenEncoder(HOG(patch_size=cell_size), {}, image_size, {"hog_cell_size": cell_size})
    else:
        raise ValueError(f"align.encoder.source: must be 'checkpoint', 'random', 'dinov2' or 'hog', got {source!r}")
    return dataclasses.replace(encoder, model=encoder.model.clone(dtype=dtype))


def abstract_encoder(source: str, path: str, *, preset: str = "B/14", image_size: int = 0, cell_size: int = 0,
                     dtype: Any = jnp.float32) -> FrozenEncoder:
    """The encoder `load_encoder` would build, with `jax.ShapeDtypeStruct` params and no weights read: DINOv2 from
    its preset, the in-repo encoder from its checkpoint's recorded architecture, HOG as it is (an ahead-of-time
    compile, `train.compile_check`)."""
    if source == "hog":
        return load_encoder(source, path, image_size=image_size, cell_size=cell_size, dtype=dtype)
    if source == "dinov2":
        image_size = image_size or 224
        model = vit_preset(preset)
        model = model.clone(pos_embed_grid=image_size // model.patch_size)
        metadata = {}
    elif source in ("checkpoint", "random"):
        metadata = read_encoder_metadata(path)
        model, image_size = ViT(**metadata["vit"]), image_size or int(metadata["image_size"])
    else:
        raise ValueError(f"align.encoder.source: must be 'checkpoint', 'random', 'dinov2' or 'hog', got {source!r}")
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, image_size, image_size, 3)))["params"]
    return FrozenEncoder(model.clone(dtype=dtype), params, image_size, metadata)

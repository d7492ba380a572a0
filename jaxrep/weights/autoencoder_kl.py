"""diffusers' AutoencoderKL weights (SD-VAE) as `jaxrep.nn.autoencoder_kl.AutoencoderKL` variables, and the
latent statistics files of the latent presets.

Weights are read by `jaxrep.weights.convert.load_state_dict` (safetensors, or torch with `weights_only=True`), so
no pickled code runs; the architecture comes from a diffusers directory's `config.json`, else SD-VAE's.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxrep import files
from jaxrep.diffusion.latents import LatentNormalization
from jaxrep.nn.autoencoder_kl import SD_VAE_FT_MSE_CONFIG, AutoencoderKL
from jaxrep.weights import hub
from jaxrep.weights.convert import MissingWeightsError, load_state_dict, match_params

# The files of a diffusers AutoencoderKL repository on the Hugging Face Hub (hf://stabilityai/sd-vae-ft-ema).
HUB_FILES = ("config.json", "diffusion_pytorch_model.safetensors")

__all__ = ["abstract_autoencoder_kl", "autoencoder_kl_params_from_state_dict", "load_autoencoder_kl",
           "load_latent_stats"]

# The released sd-vae-ft-mse files carry the names of diffusers' pre-0.17 `AttentionBlock` (nn.Linear, so (C, C)
# weights); diffusers renames them one to one on load (`_convert_deprecated_attention_blocks`, now
# `_fix_state_dict_keys_on_load`), with no reshaping.
_DEPRECATED_ATTENTION = re.compile(r"(\.attentions\.\d+\.)(query|key|value|proj_attn)\.")


_CURRENT_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_SUPPORTED_ONLY = {"act_fn": "silu", "down_block_types": "DownEncoderBlock2D", "up_block_types": "UpDecoderBlock2D"}


def _expected_shapes(model: AutoencoderKL) -> dict[tuple[str, ...], tuple[int, ...]]:
    side = 2 ** (len(model.block_out_channels) - 1)
    images = jax.ShapeDtypeStruct((1, side, side, model.in_channels), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), images)
    return {path: leaf.shape for path, leaf in traverse_util.flatten_dict(variables["params"]).items()}


def _flax_path(module: str) -> tuple[str, ...]:
    """'encoder.down_blocks.0.resnets.1.conv1' -> ('encoder', 'down_blocks_0', 'resnets_1', 'conv1')."""
    return tuple(re.sub(r"\.(\d+)(?=\.|$)", r"_\1", module).split("."))


def _diffusers_name(path: tuple[str, ...]) -> str:
    """(..., 'resnets_1', 'conv1', 'kernel') -> '....resnets.1.conv1.weight', for error messages."""
    module = re.sub(r"_(\d+)(?=\.|$)", r".\1", ".".join(path[:-1]))
    return f"{module}.{'bias' if path[-1] == 'bias' else 'weight'}"


def autoencoder_kl_params_from_state_dict(state_dict: Mapping[str, Any], model: AutoencoderKL) -> dict:
    """Converts a diffusers `AutoencoderKL` state dict (current or deprecated attention names) to `{"params": ...}`.

    Conv weights (O, I, kh, kw) become (kh, kw, I, O) kernels, linear (O, I) become (I, O), GroupNorm weights
    become scales. Raises `CheckpointMismatchError` listing every missing, unexpected or mis-shaped key.
    """
    expected = _expected_shapes(model)

    def to_flax(name, value):
        value = np.asarray(value, np.float32)
        current = _DEPRECATED_ATTENTION.sub(lambda m: m.group(1) + _CURRENT_ATTENTION[m.group(2)] + ".", name)
        module, _, kind = current.rpartition(".")
        prefix = _flax_path(module)
        if kind == "bias":
            return prefix + ("bias",), value
        if kind == "weight" and prefix + ("scale",) in expected:
            return prefix + ("scale",), value
        if kind == "weight" and prefix + ("kernel",) in expected:
            # conv (O, I, kh, kw) -> (kh, kw, I, O); linear (O, I) -> (I, O)
            return prefix + ("kernel",), value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
        return None

    config = {field: getattr(model, field) for field in SD_VAE_FT_MSE_CONFIG}
    params = match_params(state_dict.items(), expected, to_flax, missing_name=_diffusers_name,
                          header=f"checkpoint does not match the AutoencoderKL {config}")
    return {"params": traverse_util.unflatten_dict(jax.tree.map(jnp.asarray, params))}


def _model_config(config_path: str) -> dict:
    config = json.loads(files.read_bytes(config_path))
    for field, required in _SUPPORTED_ONLY.items():
        values = config.get(field, required)
        if any(value != required for value in ([values] if isinstance(values, str) else values)):
            raise ValueError(f"{config_path}: {field}={values!r} is not supported (only {required!r})")
    fields = {field: config[field] for field in SD_VAE_FT_MSE_CONFIG if field in config}
    # a field left out of config.json takes diffusers' default, which differs from sd-vae-ft-mse for these two
    fields = {**SD_VAE_FT_MSE_CONFIG, "block_out_channels": (64,), "layers_per_block": 1, **fields}
    return {**fields, "block_out_channels": tuple(fields["block_out_channels"])}


def load_autoencoder_kl(path: str | os.PathLike, *, dtype: Any = jnp.float32) -> tuple[AutoencoderKL, dict]:
    """Builds the `AutoencoderKL` and its float32 variables from diffusers weights.

    Args:
      path: a diffusers model directory (`config.json` and `diffusion_pytorch_model.safetensors`, or `.bin`,
        read with `weights_only=True`), a single weights file, which gets `SD_VAE_FT_MSE_CONFIG`, or a Hugging
        Face name such as `hf://stabilityai/sd-vae-ft-ema` (`jaxrep.weights.hub`).
      dtype: compute dtype of the model (params stay float32).

    Returns:
      (model, variables): use as `model.apply(variables, images, method="encode")`.

    Raises:
      MissingWeightsError (a FileNotFoundError): no such file, or a directory without config or weights.
      UnreadableWeightsError (an OSError): the weights file cannot be read (truncated, corrupt, wrong format).
      CheckpointMismatchError: the weights do not fit the configured architecture (keys listed).
    """
    path = hub.resolve(os.fspath(path), field="vae.path", files=HUB_FILES)
    if os.path.isdir(path):
        config = _model_config(os.path.join(path, "config.json"))
        candidates = [os.path.join(path, f"diffusion_pytorch_model.{ext}") for ext in ("safetensors", "bin")]
        weights = next((file for file in candidates if os.path.exists(file)), None)
        if weights is None:
            raise MissingWeightsError(f"{path}: no diffusion_pytorch_model.safetensors or .bin")
    elif os.path.exists(path):
        config, weights = SD_VAE_FT_MSE_CONFIG, path
    else:
        raise MissingWeightsError(f"no SD-VAE weights at {path!r}")
    state_dict = load_state_dict(weights)
    model = AutoencoderKL(**config, dtype=dtype)
    return model, autoencoder_kl_params_from_state_dict(state_dict, model)


def abstract_autoencoder_kl(path: str | os.PathLike = "", *, latent_size: int = 32,
                            dtype: Any = jnp.float32) -> tuple[AutoencoderKL, dict]:
    """(model, variables as `jax.ShapeDtypeStruct`s) of the `AutoencoderKL` that `load_autoencoder_kl(path)` builds,
    without reading weights: the architecture from a diffusers directory's `config.json` (local or in a bucket),
    else SD-VAE's (`SD_VAE_FT_MSE_CONFIG`), for an ahead-of-time compile (`train.compile_check`)."""
    path = os.fspath(path)
    config = (_model_config(files.join(path, "config.json")) if path and files.path(path).is_dir()
              else SD_VAE_FT_MSE_CONFIG)
    model = AutoencoderKL(**config, dtype=dtype)
    side = latent_size * 2 ** (len(model.block_out_channels) - 1)  # the image side of `latent_size` latents
    return model, jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, side, side, 3)))


def load_latent_stats(path: str) -> LatentNormalization:
    """Per-channel statistics from a file holding `latents_scale` and `latents_bias` (C,): iREPA's
    `sdvae-ft-mse-f8d4-latents-stats.pt` (read with `weights_only=True`), a `.safetensors` or an `.npz`."""
    from jaxrep.weights.convert import load_state_dict

    if not files.path(path).is_file():
        raise FileNotFoundError(f"data.latent_stats_path: no such file {path!r}")
    path = files.local_copy(path)
    arrays = dict(np.load(path, allow_pickle=False)) if path.endswith(".npz") else load_state_dict(path)
    missing = [key for key in ("latents_scale", "latents_bias") if key not in arrays]
    if missing:
        raise ValueError(f"data.latent_stats_path: {path!r} lacks {missing} (has {sorted(arrays)})")
    scale, bias = (np.asarray(arrays[key], np.float32).reshape(-1) for key in ("latents_scale", "latents_bias"))
    return LatentNormalization(scale, bias)

"""The Stable Diffusion VAE (`diffusers.AutoencoderKL`, e.g. `stabilityai/sd-vae-ft-mse`) in Flax, NHWC.

The KL-regularised autoencoder of Rombach et al. 2022 ("High-Resolution Image Synthesis with Latent Diffusion
Models", Sec. 3.1 and App. G), as REPA uses it to map 256x256x3 images to 32x32x4 latents (f = 8):

    encoder  conv_in -> down blocks (resnets, stride-2 conv except the last) -> mid (resnet, attention, resnet)
             -> GroupNorm, SiLU, conv_out (2 * latent_channels) -> quant_conv (1x1) -> (mean, log-variance)
    decoder  post_quant_conv (1x1) -> conv_in -> mid -> up blocks (layers_per_block + 1 resnets, nearest 2x
             upsample then conv, except the last; widths reversed) -> GroupNorm, SiLU, conv_out

GroupNorm eps is 1e-6 everywhere; the mid-block attention is single-head over all H*W positions, with its own
GroupNorm and a residual connection. Parameters are named after the diffusers modules (`down_blocks.0.resnets.1`
-> `down_blocks_0/resnets_1`), so conversion is a rename plus the torch -> Flax kernel layout.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxrep.nn.convert import MissingWeightsError, load_state_dict, match_params

__all__ = ["AutoencoderKL", "SD_VAE_FT_MSE_CONFIG", "abstract_autoencoder_kl", "autoencoder_kl_params_from_state_dict",
           "load_autoencoder_kl"]

# The architecture of `stabilityai/sd-vae-ft-mse` and `-ema` (their config.json; the rest are diffusers defaults),
# used for a bare `.safetensors` file.
SD_VAE_FT_MSE_CONFIG = dict(in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                            latent_channels=4, norm_num_groups=32, use_quant_conv=True, use_post_quant_conv=True,
                            mid_block_add_attention=True, scaling_factor=0.18215)
_SUPPORTED_ONLY = {"act_fn": "silu", "down_block_types": "DownEncoderBlock2D", "up_block_types": "UpDecoderBlock2D"}


class _Settings(nn.Module):
    """Fields every layer needs."""

    groups: int
    dtype: Any

    def conv(self, features, kernel=3, **kwargs):
        kwargs.setdefault("padding", kernel // 2)
        return nn.Conv(features, (kernel, kernel), dtype=self.dtype, **kwargs)

    def norm(self, **kwargs):  # two-pass variance, like torch: E[x^2] - E[x]^2 loses digits
        return nn.GroupNorm(self.groups, epsilon=1e-6, dtype=self.dtype, use_fast_variance=False, **kwargs)


class _ResnetBlock(_Settings):
    """x + conv2(SiLU(GN(conv1(SiLU(GN(x)))))); a 1x1 `conv_shortcut` on x when the width changes."""

    features: int

    @nn.compact
    def __call__(self, x):
        h = self.conv(self.features, name="conv1")(nn.silu(self.norm(name="norm1")(x)))
        h = self.conv(self.features, name="conv2")(nn.silu(self.norm(name="norm2")(h)))
        if x.shape[-1] != self.features:
            x = self.conv(self.features, kernel=1, name="conv_shortcut")(x)
        return x + h


class _Attention(_Settings):
    """x + to_out(softmax(q k^T / sqrt(C)) v) over the H*W positions of GN(x); one head of width C."""

    @nn.compact
    def __call__(self, x):
        batch, height, width, channels = x.shape
        h = self.norm(name="group_norm")(x).reshape(batch, height * width, channels)
        query, key, value = (nn.Dense(channels, dtype=self.dtype, name=name)(h) for name in ("to_q", "to_k", "to_v"))
        logits = jnp.einsum("bqc,bkc->bqk", query, key).astype(jnp.float32) / np.sqrt(channels)
        weights = jax.nn.softmax(logits, axis=-1).astype(value.dtype)  # softmax in float32, as diffusers upcasts
        h = nn.Dense(channels, dtype=self.dtype, name="to_out_0")(jnp.einsum("bqk,bkc->bqc", weights, value))
        return x + h.reshape(x.shape)


class _MidBlock(_Settings):
    add_attention: bool

    @nn.compact
    def __call__(self, x):
        x = _ResnetBlock(self.groups, self.dtype, x.shape[-1], name="resnets_0")(x)
        if self.add_attention:
            x = _Attention(self.groups, self.dtype, name="attentions_0")(x)
        return _ResnetBlock(self.groups, self.dtype, x.shape[-1], name="resnets_1")(x)


class _Resample(_Settings):
    """'down': (B, H, W, C) -> (B, H/2, W/2, C); 'up': -> (B, 2H, 2W, C)."""

    features: int
    direction: str

    @nn.compact
    def __call__(self, x):
        if self.direction == "down":  # diffusers' `padding=0` downsampler: zero-pad bottom/right only
            return self.conv(self.features, strides=2, padding=((0, 1), (0, 1)), name="conv")(x)
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # nearest-neighbour 2x, then a 3x3 conv
        return self.conv(self.features, name="conv")(x)


class _Block(_Settings):
    """`num_resnets` resnet blocks of width `features`, then an optional 'down' or 'up' resampler."""

    features: int
    num_resnets: int
    resample: str | None

    @nn.compact
    def __call__(self, x):
        for j in range(self.num_resnets):
            x = _ResnetBlock(self.groups, self.dtype, self.features, name=f"resnets_{j}")(x)
        if self.resample is not None:
            x = _Resample(self.groups, self.dtype, self.features, self.resample, name=f"{self.resample}samplers_0")(x)
        return x


class _Encoder(_Settings):
    """(B, H, W, in_channels) -> (B, H/f, W/f, 2 * latent_channels), f = 2 ** (len(block_out_channels) - 1)."""

    block_out_channels: Sequence[int]
    layers_per_block: int
    add_attention: bool
    latent_channels: int

    @nn.compact
    def __call__(self, x):
        x = self.conv(self.block_out_channels[0], name="conv_in")(x)
        last = len(self.block_out_channels) - 1
        for i, features in enumerate(self.block_out_channels):
            resample = "down" if i < last else None
            x = _Block(self.groups, self.dtype, features, self.layers_per_block, resample, name=f"down_blocks_{i}")(x)
        x = _MidBlock(self.groups, self.dtype, self.add_attention, name="mid_block")(x)
        x = nn.silu(self.norm(name="conv_norm_out")(x))
        return self.conv(2 * self.latent_channels, name="conv_out")(x)


class _Decoder(_Settings):
    """(B, h, w, latent_channels) -> (B, f h, f w, out_channels); the widths are walked in reverse."""

    block_out_channels: Sequence[int]
    layers_per_block: int
    add_attention: bool
    out_channels: int

    @nn.compact
    def __call__(self, x):
        widths = tuple(reversed(self.block_out_channels))
        x = self.conv(widths[0], name="conv_in")(x)
        x = _MidBlock(self.groups, self.dtype, self.add_attention, name="mid_block")(x)
        for i, features in enumerate(widths):
            resample = "up" if i < len(widths) - 1 else None
            x = _Block(self.groups, self.dtype, features, self.layers_per_block + 1, resample, name=f"up_blocks_{i}")(x)
        x = nn.silu(self.norm(name="conv_norm_out")(x))
        return self.conv(self.out_channels, name="conv_out")(x)


class AutoencoderKL(nn.Module):
    """The LDM / Stable Diffusion KL autoencoder (Rombach et al. 2022), fields named as in the diffusers config.

    `encode`: images (B, H, W, in_channels) in [-1, 1] -> posterior (mean, std), each (B, H/f, W/f,
    latent_channels), f = 2 ** (len(block_out_channels) - 1); std = exp(0.5 * clip(logvar, -30, 20)) as in
    diffusers' `DiagonalGaussianDistribution`. `decode`: latents (B, h, w, latent_channels) -> images (B, f h, f w,
    out_channels), roughly in [-1, 1] and not clipped. Both take and give UNSCALED latents (mean + std * noise):
    multiply by `scaling_factor` (0.18215 for SD) before the diffusion model and divide before decoding, as REPA
    does. `__call__` reconstructs from the mean (used to initialise). Params are float32; `dtype` is the
    compute dtype (e.g. bfloat16; GroupNorm statistics and the softmax stay float32); outputs are float32.
    """

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: Sequence[int] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True
    scaling_factor: float = 0.18215  # metadata for the caller; not applied here
    dtype: Any = jnp.float32

    def setup(self):
        common = dict(groups=self.norm_num_groups, dtype=self.dtype, block_out_channels=tuple(self.block_out_channels),
                      layers_per_block=self.layers_per_block, add_attention=self.mid_block_add_attention)
        self.encoder = _Encoder(latent_channels=self.latent_channels, **common)
        self.decoder = _Decoder(out_channels=self.out_channels, **common)
        latent = self.latent_channels
        self.quant_conv = nn.Conv(2 * latent, (1, 1), dtype=self.dtype) if self.use_quant_conv else None
        self.post_quant_conv = nn.Conv(latent, (1, 1), dtype=self.dtype) if self.use_post_quant_conv else None

    def encode(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """images: (B, H, W, in_channels) in [-1, 1] -> (mean, std): (B, H/f, W/f, latent_channels) float32."""
        chex.assert_rank(images, 4)
        chex.assert_axis_dimension(images, 3, self.in_channels)
        moments = self.encoder(images)
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        mean, log_var = jnp.split(moments.astype(jnp.float32), 2, axis=-1)
        return mean, jnp.exp(0.5 * jnp.clip(log_var, -30.0, 20.0))

    def decode(self, latents: jax.Array) -> jax.Array:
        """latents: (B, h, w, latent_channels), unscaled -> images (B, f h, f w, out_channels) float32."""
        chex.assert_rank(latents, 4)
        chex.assert_axis_dimension(latents, 3, self.latent_channels)
        if self.post_quant_conv is not None:
            latents = self.post_quant_conv(latents)
        return self.decoder(latents).astype(jnp.float32)

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.decode(self.encode(images)[0])


def _expected_shapes(model: AutoencoderKL) -> dict[tuple[str, ...], tuple[int, ...]]:
    side = 2 ** (len(model.block_out_channels) - 1)
    images = jax.ShapeDtypeStruct((1, side, side, model.in_channels), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), images)
    return {path: leaf.shape for path, leaf in traverse_util.flatten_dict(variables["params"]).items()}


# The released sd-vae-ft-mse files carry the names of diffusers' pre-0.17 `AttentionBlock` (nn.Linear, so (C, C)
# weights); diffusers renames them one to one on load (`_convert_deprecated_attention_blocks`, now
# `_fix_state_dict_keys_on_load`), with no reshaping.
_DEPRECATED_ATTENTION = re.compile(r"(\.attentions\.\d+\.)(query|key|value|proj_attn)\.")
_CURRENT_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


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
    with open(config_path) as file:
        config = json.load(file)
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
        read with `weights_only=True`), or a single weights file, which gets `SD_VAE_FT_MSE_CONFIG`.
      dtype: compute dtype of the model (params stay float32).

    Returns:
      (model, variables): use as `model.apply(variables, images, method="encode")`.

    Raises:
      MissingWeightsError (a FileNotFoundError): no such file, or a directory without config or weights.
      UnreadableWeightsError (an OSError): the weights file cannot be read (truncated, corrupt, wrong format).
      CheckpointMismatchError: the weights do not fit the configured architecture (keys listed).
    """
    path = os.fspath(path)
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
    without reading weights: the architecture from a diffusers directory's `config.json`, else SD-VAE's
    (`SD_VAE_FT_MSE_CONFIG`), for an ahead-of-time compile (`train.compile_check`)."""
    path = os.fspath(path)
    config = (_model_config(os.path.join(path, "config.json")) if path and os.path.isdir(path)
              else SD_VAE_FT_MSE_CONFIG)
    model = AutoencoderKL(**config, dtype=dtype)
    side = latent_size * 2 ** (len(model.block_out_channels) - 1)  # the image side of `latent_size` latents
    return model, jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, side, side, 3)))

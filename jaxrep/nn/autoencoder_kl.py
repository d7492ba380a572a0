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

from collections.abc import Sequence
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["AutoencoderKL", "SD_VAE_FT_MSE_CONFIG"]

# The architecture of `stabilityai/sd-vae-ft-mse` and `-ema` (their config.json; the rest are diffusers defaults),
# used for a bare `.safetensors` file.
SD_VAE_FT_MSE_CONFIG = dict(in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                            latent_channels=4, norm_num_groups=32, use_quant_conv=True, use_post_quant_conv=True,
                            mid_block_add_attention=True, scaling_factor=0.18215)


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

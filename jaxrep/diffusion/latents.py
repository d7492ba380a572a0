"""Latent-space training inputs: a fresh SD-VAE posterior sample per example and step (REPA's `sample_posterior`),
and the latent normalisation that maps VAE latents to the diffusion model's scale and back.

Prepared datasets (`jaxrep.data.latent_records`) store the posterior N(mean, std^2) of each image's unscaled
SD-VAE latent; REPA's train.py draws z = (mean + std * eps) * 0.18215 at every step, so each epoch sees new
latents, and its generate.py decodes z / 0.18215. iREPA's train.py instead normalises per channel with statistics
from a file: z = (x - latents_bias) * latents_scale, decoded as z / latents_scale + latents_bias. Both are a
`LatentNormalization` (REPA's: scale 0.18215, bias 0).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

SD_VAE_SCALE = 0.18215  # Rombach et al. 2022: the SD-VAE latents' scaling factor (unit variance)
POSTERIOR_STREAM = 0x706F7374  # folded into each example key; leaves the t / noise / label-drop draws unchanged


class LatentNormalization(NamedTuple):
    """z = (x - bias) * scale; scale and bias are scalars or per-channel (C,) arrays (NHWC latents)."""

    scale: float | np.ndarray = SD_VAE_SCALE
    bias: float | np.ndarray = 0.0

    def normalize(self, latents: jax.Array) -> jax.Array:
        return (latents - jnp.asarray(self.bias, jnp.float32)) * jnp.asarray(self.scale, jnp.float32)

    def denormalize(self, latents: jax.Array) -> jax.Array:
        return latents / jnp.asarray(self.scale, jnp.float32) + jnp.asarray(self.bias, jnp.float32)


def sample_posterior(mean: jax.Array, std: jax.Array, keys: jax.Array,
                     normalization: LatentNormalization = LatentNormalization()) -> jax.Array:
    """z = normalize(mean + std * eps) with eps ~ N(0, I) from each example's key.

    Args:
      mean, std: posterior moments (B, h, w, c).
      keys: per-example keys (B, 2) (`jaxrep.training.example_keys`).
      normalization: REPA's 0.18215 scale by default.
    Returns:
      z (B, h, w, c) float32.
    """
    eps = jax.vmap(lambda key: jax.random.normal(jax.random.fold_in(key, POSTERIOR_STREAM), mean.shape[1:]))(keys)
    return normalization.normalize(mean.astype(jnp.float32) + std.astype(jnp.float32) * eps)


def clean_input(batch: dict, keys: jax.Array,
                normalization: LatentNormalization = LatentNormalization()) -> jax.Array:
    """The clean x_0 of a training batch: `batch["image"]`, or a posterior sample when the batch holds moments
    ("image" = mean, "latent_std" = std, from a prepared latent dataset)."""
    if "latent_std" in batch:
        return sample_posterior(batch["image"], batch["latent_std"], keys, normalization)
    return batch["image"]

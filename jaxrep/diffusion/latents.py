"""Latent-space training inputs: a fresh SD-VAE posterior sample per example and step (REPA's `sample_posterior`).

Prepared datasets (`jaxrep.data.latent_records`) store the posterior N(mean, std^2) of each image's unscaled
SD-VAE latent; REPA's train.py draws z = (mean + std * eps) * scale + bias at every step (scale 0.18215,
bias 0 for SD-VAE), so each epoch sees new latents. Sampling at decode time divides by the same scale.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SD_VAE_SCALE = 0.18215  # Rombach et al. 2022: the SD-VAE latents' scaling factor (unit variance)
POSTERIOR_STREAM = 0x706F7374  # folded into each example key; leaves the t / noise / label-drop draws unchanged


def sample_posterior(mean: jax.Array, std: jax.Array, keys: jax.Array, *, scale: float = SD_VAE_SCALE,
                     bias: float = 0.0) -> jax.Array:
    """z = (mean + std * eps) * scale + bias with eps ~ N(0, I) from each example's key.

    Args:
      mean, std: posterior moments (B, h, w, c).
      keys: per-example keys (B, 2) (`jaxrep.training.example_keys`).
    Returns:
      z (B, h, w, c) float32.
    """
    eps = jax.vmap(lambda key: jax.random.normal(jax.random.fold_in(key, POSTERIOR_STREAM), mean.shape[1:]))(keys)
    return (mean.astype(jnp.float32) + std.astype(jnp.float32) * eps) * scale + bias


def clean_input(batch: dict, keys: jax.Array, *, latent_scale: float = SD_VAE_SCALE) -> jax.Array:
    """The clean x_0 of a training batch: `batch["image"]`, or a posterior sample when the batch holds moments
    ("image" = mean, "latent_std" = std, from a prepared latent dataset)."""
    if "latent_std" in batch:
        return sample_posterior(batch["image"], batch["latent_std"], keys, scale=latent_scale)
    return batch["image"]

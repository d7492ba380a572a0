"""Target features for representation alignment: encoder preprocessing, frozen encoding, token-grid resizing.

REPA's pipeline (`sihyun-yu/REPA:train.py` preprocess_raw_image, dinov2 branch): uint8 image -> /255 ->
ImageNet mean/std -> bicubic resize to 224 * (resolution // 256) (normalise *then* resize) -> DINOv2
post-LN patch tokens, CLS and registers dropped. At 256 px that gives a 16 x 16 grid, the SiT/2 grid, so
REPA never resizes tokens; `resize_token_grid` covers setups where the grids differ.

Resizing uses PyTorch's kernels (`jaxrep.nn.vit.resize_like_torch`): bicubic a = -0.75, no antialias,
as `F.interpolate(mode="bicubic")`; `jax.image.resize` (Keys a = -0.5, renormalised border taps) would
shift the targets slightly.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp

from jaxrep.nn.vit import ViT, resize_like_torch

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "preprocess_images",
    "resize_token_grid",
    "encoder_targets",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess_images(
    images: jax.Array,
    *,
    image_size: int = 224,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> jax.Array:
    """REPA's encoder preprocessing: scale to [0, 1], normalise, then bicubic resize (PyTorch kernel).

    Args:
      images: (B, H, W, 3), uint8 in [0, 255] (divided by 255) or float already in [0, 1].
      image_size: output side; 224 * (resolution // 256) in REPA (448 at 512 px).
      mean, std: per-channel normalisation (ImageNet for DINOv2).

    Returns:
      float32 (B, image_size, image_size, 3).
    """
    chex.assert_rank(images, 4)
    if images.shape[-1] != 3:
        raise ValueError(f"expected channels-last RGB images (B, H, W, 3), got shape {images.shape}")
    pixels = images.astype(jnp.float32)
    if images.dtype == jnp.uint8:
        pixels = pixels / 255.0
    pixels = (pixels - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
    return resize_like_torch(pixels, (image_size, image_size), method="bicubic", antialias=False)


def _square_grid(count: int) -> tuple[int, int]:
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"{count} tokens are not a square grid; pass grid_hw_in")
    return side, side


def resize_token_grid(
    tokens: jax.Array,
    grid_hw_out: tuple[int, int],
    *,
    grid_hw_in: tuple[int, int] | None = None,
) -> jax.Array:
    """Resizes (B, N, D) tokens on an H x W grid (row-major) to another grid, bilinearly.

    Bilinear with half-pixel centres and no antialias, i.e. PyTorch
    `F.interpolate(mode="bilinear", align_corners=False)` on the (D, H, W) map. Without antialias a
    downsampling by more than 2x skips tokens rather than averaging them; prefer matching the encoder's
    input size to the SiT grid (REPA's choice) when possible.

    Args:
      tokens: (B, H*W, D).
      grid_hw_out: target grid (H', W').
      grid_hw_in: source grid; None means square.

    Returns:
      float32 (B, H'*W', D).
    """
    chex.assert_rank(tokens, 3)
    batch, count, width = tokens.shape
    grid_hw_in = _square_grid(count) if grid_hw_in is None else tuple(grid_hw_in)
    if grid_hw_in[0] * grid_hw_in[1] != count:
        raise ValueError(f"grid_hw_in {grid_hw_in} does not hold {count} tokens")
    grid = tokens.reshape(batch, grid_hw_in[0], grid_hw_in[1], width)
    grid = resize_like_torch(grid, grid_hw_out, method="bilinear", antialias=False)
    return grid.reshape(batch, grid_hw_out[0] * grid_hw_out[1], width)


def encoder_targets(
    encoder: ViT,
    encoder_params: dict,
    images: jax.Array,
    *,
    image_size: int = 224,
    grid_hw: tuple[int, int] | None = None,
) -> jax.Array:
    """Frozen-encoder targets y*: preprocess, encode, optionally resize the token grid, stop gradients.

    Args:
      encoder: the `ViT`.
      encoder_params: its `params` collection.
      images: raw (B, H, W, 3) images, uint8 or float in [0, 1].
      image_size: encoder input side (224 for a 16 x 16 DINOv2/14 grid).
      grid_hw: alignment grid (the SiT token grid); None keeps the encoder grid.

    Returns:
      (B, N, D_enc) float32 patch tokens, post-LN, under `stop_gradient` (a bf16 encoder's tokens are
      cast up, so the alignment loss is computed in float32 either way).
    """
    tokens = encoder.apply({"params": encoder_params}, preprocess_images(images, image_size=image_size))
    tokens = tokens.astype(jnp.float32)
    side = image_size // encoder.patch_size
    if grid_hw is not None and tuple(grid_hw) != (side, side):
        tokens = resize_token_grid(tokens, grid_hw, grid_hw_in=(side, side))
    return jax.lax.stop_gradient(tokens)

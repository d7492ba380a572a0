"""DINOv2 vision transformer (Oquab et al. 2024) in Flax linen, the frozen target encoder of REPA.

Architecture as in the torch-hub `facebookresearch/dinov2` backbones and `transformers.Dinov2Model`:
patch embedding (conv p x p, stride p), CLS token, learned absolute position embedding (added to CLS and
patches), optional register tokens (Darcet et al. 2024; inserted after CLS, without a position embedding),
pre-LN blocks (MHSA with fused qkv, LayerScale, MLP with exact GELU or SwiGLU for ViT-g), final LayerNorm.
The model returns the patch tokens after the final LayerNorm ("x_norm_patchtokens", what REPA aligns to),
CLS and registers dropped.

Parameter names follow the torch-hub layout (`patch_embed`, `blocks_{i}/attn/qkv`, `ls1`, `norm`, ...) so
that `jaxrep.weights.convert` maps checkpoints one to one.

Resampling follows PyTorch, not `jax.image.resize`: `F.interpolate(mode="bicubic")` uses the cubic
convolution kernel with a = -0.75 and clamped (edge-replicated) taps, whereas `jax.image.resize` uses Keys
a = -0.5 with renormalised taps at the border; with `antialias=True` PyTorch switches to a = -0.5 with a
stretched support. `resize_like_torch` reproduces all of these exactly (tested against torch), so target
features and resampled position embeddings match the reference pipelines.
"""

from __future__ import annotations

import math
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ViT",
    "ViTBlock",
    "VIT_PRESETS",
    "vit_preset",
    "resize_like_torch",
    "resample_pos_embed",
]


# ----------------------------------------------------------------------------------------------------
# PyTorch-exact resampling (F.interpolate with align_corners=False and an explicit output size)
# ----------------------------------------------------------------------------------------------------

def _cubic_weight(distance: np.ndarray, a: float) -> np.ndarray:
    """Cubic convolution kernel (Keys 1981) with parameter a, evaluated at |distance|."""
    x = np.abs(distance)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return np.where(x <= 1.0, near, np.where(x < 2.0, far, 0.0))


def _torch_resize_matrix(in_size: int, out_size: int, method: str, antialias: bool) -> np.ndarray:
    """(out_size, in_size) matrix M with out = M @ in along one axis, as PyTorch computes it.

    Coordinates are computed in float32 like PyTorch does for float32 inputs, which keeps the parity
    error at float32 rounding level even on 256-px images.
    """
    f32 = np.float32
    matrix = np.zeros((out_size, in_size), np.float64)
    scale = f32(in_size) / f32(out_size)
    rows = np.arange(out_size).astype(f32)
    if antialias:
        # PyTorch's separable AA path (PIL-style): support stretched by the scale when downsampling,
        # taps truncated at the border and the weights renormalised; bicubic uses a = -0.5 here.
        taps = 4 if method == "bicubic" else 2
        support = f32(taps / 2) * scale if scale >= 1.0 else f32(taps / 2)
        inv_scale = f32(1.0) / scale if scale >= 1.0 else f32(1.0)
        for row in range(out_size):
            center = scale * (rows[row] + f32(0.5))
            lo = max(int(center - support + f32(0.5)), 0)
            hi = min(int(center + support + f32(0.5)), in_size)
            cols = np.arange(lo, hi)
            arg = ((cols.astype(f32) - center + f32(0.5)) * inv_scale).astype(np.float64)
            if method == "bicubic":
                weights = _cubic_weight(arg, -0.5)
            else:
                weights = np.maximum(0.0, 1.0 - np.abs(arg))
            total = weights.sum()
            matrix[row, cols] = weights / total if total != 0.0 else weights
        return matrix
    source = (scale * (rows + f32(0.5)) - f32(0.5)).astype(np.float64)
    rows = rows.astype(np.int64)
    if method == "bicubic":
        base = np.floor(source)
        frac = source - base
        for offset in range(-1, 3):
            cols = np.clip(base + offset, 0, in_size - 1).astype(np.int64)
            np.add.at(matrix, (rows, cols), _cubic_weight(frac - offset, -0.75))
        return matrix
    source = np.maximum(source, 0.0)  # PyTorch clamps the linear source index at 0
    lo = np.floor(source).astype(np.int64)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = source - lo
    np.add.at(matrix, (rows, lo), 1.0 - frac)
    np.add.at(matrix, (rows, hi), frac)
    return matrix


def resize_like_torch(
    images: jax.Array,
    size_hw: tuple[int, int],
    *,
    method: str = "bicubic",
    antialias: bool = False,
) -> jax.Array:
    """Resizes axes (-3, -2) of a channels-last array exactly like PyTorch's `F.interpolate`.

    Matches `F.interpolate(x, size=size_hw, mode=method, align_corners=False, antialias=antialias)` on the
    NCHW transpose: bicubic a = -0.75 with clamped taps (no antialias), or PyTorch's AA kernels (bicubic
    a = -0.5, support scaled by the downsampling factor). Computed in float32 as two matrix products.

    Args:
      images: (..., H, W, C) array.
      size_hw: output (H', W').
      method: "bicubic" or "bilinear".
      antialias: PyTorch's `antialias` flag.

    Returns:
      (..., H', W', C) float32 array.
    """
    if method not in ("bicubic", "bilinear"):
        raise ValueError(f"method must be 'bicubic' or 'bilinear', got {method!r}")
    if images.ndim < 3:
        raise ValueError(f"expected a (..., H, W, C) array, got shape {images.shape}")
    in_h, in_w = images.shape[-3], images.shape[-2]
    out_h, out_w = int(size_hw[0]), int(size_hw[1])
    images = images.astype(jnp.float32)
    if (in_h, in_w) == (out_h, out_w):
        return images  # every PyTorch kernel is the identity at equal size
    rows = jnp.asarray(_torch_resize_matrix(in_h, out_h, method, antialias), jnp.float32)
    cols = jnp.asarray(_torch_resize_matrix(in_w, out_w, method, antialias), jnp.float32)
    return jnp.einsum("ph,qw,...hwc->...pqc", rows, cols, images, precision=jax.lax.Precision.HIGHEST)


def _square_side(count: int, what: str) -> int:
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"{what}: {count} positions do not form a square grid")
    return side


def _pos_embed_for_grid(pos_embed: jax.Array, grid_hw: tuple[int, int], antialias: bool) -> jax.Array:
    """(1, 1 + G*G, D) position embedding (CLS first) resampled bicubically to grid_hw patches."""
    side = _square_side(pos_embed.shape[1] - 1, "pos_embed")
    if (side, side) == tuple(grid_hw):
        return pos_embed
    width = pos_embed.shape[-1]
    patch_pos = pos_embed[0, 1:].reshape(side, side, width)
    patch_pos = resize_like_torch(patch_pos, grid_hw, method="bicubic", antialias=antialias)
    patch_pos = patch_pos.reshape(1, grid_hw[0] * grid_hw[1], width).astype(pos_embed.dtype)
    return jnp.concatenate([pos_embed[:, :1], patch_pos], axis=1)


def resample_pos_embed(params: dict, grid_hw: tuple[int, int], *, antialias: bool = True) -> dict:
    """Returns ViT `params` with `pos_embed` resampled once to a grid_hw patch grid.

    REPA resamples the DINOv2 embedding (native 37 x 37 for 518 px) to 16 x 16 at load time with timm's
    `resample_abs_pos_embed` (bicubic, antialias=True) and then never interpolates again (`REPA:utils.py`
    load_encoders); the default reproduces that. Apply the result with `model.clone(pos_embed_grid=G')`
    (Flax checks parameter shapes), e.g.

      params = resample_pos_embed(load_dinov2_params(path, vit_preset("B/14")), (16, 16))
      encoder = vit_preset("B/14", pos_embed_grid=16)

    Args:
      params: ViT params tree (the inner `params` collection) holding `pos_embed` (1, 1 + G*G, D).
      grid_hw: target patch grid (H, W).
      antialias: PyTorch antialias flag of the bicubic resampling.
    """
    resampled = _pos_embed_for_grid(jnp.asarray(params["pos_embed"]), tuple(grid_hw), antialias)
    return {**params, "pos_embed": resampled}


# ----------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------

_dense_init = nn.initializers.truncated_normal(0.02)


class _Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (torch-hub layout: rows [q; k; v])."""

    num_heads: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        batch, count, width = tokens.shape
        head_dim = width // self.num_heads
        qkv = nn.Dense(3 * width, dtype=self.dtype, kernel_init=_dense_init, name="qkv")(tokens)
        qkv = qkv.reshape(batch, count, 3, self.num_heads, head_dim)
        query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = jnp.einsum("bqhd,bkhd->bhqk", query, key) * head_dim**-0.5
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
        mixed = jnp.einsum("bhqk,bkhd->bqhd", weights, value).reshape(batch, count, width)
        return nn.Dense(width, dtype=self.dtype, kernel_init=_dense_init, name="proj")(mixed)


class _FeedForward(nn.Module):
    """MLP with exact GELU (`fc1`, `fc2`), or SwiGLU (`w12` = [gate; up], `w3`) as in DINOv2 ViT-g."""

    hidden_dim: int
    kind: str = "mlp"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        width = tokens.shape[-1]
        dense = lambda features, name: nn.Dense(  # noqa: E731
            features, dtype=self.dtype, kernel_init=_dense_init, name=name)
        if self.kind == "mlp":
            hidden = nn.gelu(dense(self.hidden_dim, "fc1")(tokens), approximate=False)
            return dense(width, "fc2")(hidden)
        gate, up = jnp.split(dense(2 * self.hidden_dim, "w12")(tokens), 2, axis=-1)
        return dense(width, "w3")(nn.silu(gate) * up)


class ViTBlock(nn.Module):
    """Pre-LN transformer block with LayerScale: x += ls1 * attn(norm1(x)); x += ls2 * ffn(norm2(x))."""

    num_heads: int
    ffn_hidden_dim: int
    ffn: str = "mlp"
    layerscale_init: float = 1.0
    layer_norm_eps: float = 1e-6
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        width = tokens.shape[-1]
        # Exact variance: flax's fast E[x^2] - E[x]^2 drifts from PyTorch when token means dwarf their std.
        norm = lambda name: nn.LayerNorm(epsilon=self.layer_norm_eps, use_fast_variance=False,  # noqa: E731
                                         dtype=self.dtype, name=name)
        scale_init = nn.initializers.constant(self.layerscale_init)
        ls1 = self.param("ls1", scale_init, (width,))
        ls2 = self.param("ls2", scale_init, (width,))
        tokens = tokens + ls1 * _Attention(self.num_heads, self.dtype, name="attn")(norm("norm1")(tokens))
        ffn = _FeedForward(self.ffn_hidden_dim, self.ffn, self.dtype, name="mlp")
        return tokens + ls2 * ffn(norm("norm2")(tokens))


class ViT(nn.Module):
    """DINOv2 ViT returning post-LayerNorm patch tokens.

    Attributes:
      width: token width D.
      depth: number of blocks.
      num_heads: attention heads.
      patch_size: patch side p; image sides must be multiples of it.
      mlp_ratio: FFN hidden size = width * mlp_ratio (SwiGLU: 2/3 of it rounded up to a multiple of 8).
      ffn: "mlp" (GELU) or "swiglu" (ViT-g/14).
      num_registers: register tokens (0 for the original DINOv2, 4 for the *_reg variants).
      pos_embed_grid: side G of the stored position-embedding grid (37 for the released 518-px models).
      pos_embed_antialias: antialias flag of the on-the-fly bicubic resampling of the position embedding
        when the input grid differs from the stored one; False matches `transformers.Dinov2Model`, True
        matches `Dinov2WithRegistersModel` and timm. (The torch-hub model instead scales by
        (G + 0.1) / G; REPA avoids on-the-fly resampling by `resample_pos_embed` at load.)
      layerscale_init: initial LayerScale value (the hub backbones are built with 1.0).
      layer_norm_eps: LayerNorm epsilon (1e-6).
      dtype: computation dtype; parameters stay float32.
    """

    width: int = 768
    depth: int = 12
    num_heads: int = 12
    patch_size: int = 14
    mlp_ratio: float = 4.0
    ffn: str = "mlp"
    num_registers: int = 0
    pos_embed_grid: int = 37
    pos_embed_antialias: bool = False
    layerscale_init: float = 1.0
    layer_norm_eps: float = 1e-6
    dtype: Any = jnp.float32

    @property
    def ffn_hidden_dim(self) -> int:
        hidden = int(self.width * self.mlp_ratio)
        if self.ffn == "swiglu":
            hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        return hidden

    @nn.compact
    def __call__(self, images: jax.Array, *, return_cls: bool = False):
        """Encodes preprocessed images.

        Args:
          images: (B, H, W, 3) normalised pixels (see `jaxrep.align.targets.preprocess_images`); H and W
            multiples of `patch_size`.
          return_cls: also return the post-LN CLS token.

        Returns:
          patch tokens (B, (H/p) * (W/p), D), row-major over the patch grid; with `return_cls`, the tuple
          (patch tokens, CLS token (B, D)).
        """
        if self.ffn not in ("mlp", "swiglu"):
            raise ValueError(f"ffn must be 'mlp' or 'swiglu', got {self.ffn!r}")
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}")
        chex.assert_rank(images, 4)
        batch, height, width_px, channels = images.shape
        if height % self.patch_size or width_px % self.patch_size:
            raise ValueError(
                f"image size {height}x{width_px} is not a multiple of the patch size {self.patch_size}")
        grid_hw = (height // self.patch_size, width_px // self.patch_size)

        patches = nn.Conv(
            self.width, (self.patch_size, self.patch_size), strides=(self.patch_size, self.patch_size),
            padding="VALID", dtype=self.dtype, name="patch_embed")(images)
        tokens = patches.reshape(batch, grid_hw[0] * grid_hw[1], self.width)

        cls_token = self.param("cls_token", nn.initializers.normal(1e-6), (1, 1, self.width))
        pos_embed = self.param(
            "pos_embed", nn.initializers.truncated_normal(0.02),
            (1, 1 + self.pos_embed_grid**2, self.width))
        tokens = jnp.concatenate([jnp.broadcast_to(cls_token, (batch, 1, self.width)), tokens], axis=1)
        tokens = tokens + _pos_embed_for_grid(pos_embed, grid_hw, self.pos_embed_antialias)
        if self.num_registers:
            registers = self.param(
                "register_tokens", nn.initializers.normal(1e-6), (1, self.num_registers, self.width))
            registers = jnp.broadcast_to(registers, (batch, self.num_registers, self.width))
            tokens = jnp.concatenate([tokens[:, :1], registers, tokens[:, 1:]], axis=1)
        tokens = tokens.astype(self.dtype)

        for index in range(self.depth):
            tokens = ViTBlock(
                self.num_heads, self.ffn_hidden_dim, self.ffn, self.layerscale_init, self.layer_norm_eps,
                self.dtype, name=f"blocks_{index}")(tokens)
        tokens = nn.LayerNorm(epsilon=self.layer_norm_eps, use_fast_variance=False, dtype=self.dtype,
                              name="norm")(tokens)

        patch_tokens = tokens[:, 1 + self.num_registers:]
        if return_cls:
            return patch_tokens, tokens[:, 0]
        return patch_tokens


VIT_PRESETS: dict[str, dict[str, Any]] = {
    # Test / CPU encoder: 224 px -> the 16 x 16 grid of SiT/2 at 256 px, so no resampling is needed.
    "tiny": dict(width=64, depth=2, num_heads=4, pos_embed_grid=16),
    "S/14": dict(width=384, depth=12, num_heads=6),
    "B/14": dict(width=768, depth=12, num_heads=12),
    "L/14": dict(width=1024, depth=24, num_heads=16),
    "g/14": dict(width=1536, depth=40, num_heads=24, ffn="swiglu"),
}


def vit_preset(name: str, **overrides: Any) -> ViT:
    """DINOv2 ViT by preset name ("tiny", "S/14", "B/14", "L/14", "g/14"); `overrides` replace fields.

    The released DINOv2 backbones use `pos_embed_grid=37`; the *_reg variants add `num_registers=4`
    and `pos_embed_antialias=True`.
    """
    if name not in VIT_PRESETS:
        raise ValueError(f"unknown ViT preset {name!r}; choose one of {sorted(VIT_PRESETS)}")
    return ViT(**{**VIT_PRESETS[name], **overrides})

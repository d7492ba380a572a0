"""SiT: the DiT backbone with adaLN-Zero, trained as a velocity model (Peebles & Xie 2023; Ma et al. 2024).

Follows REPA's `models/sit.py` (Yu et al. 2025): fixed 2-D sin-cos position embedding, 256-d sinusoidal
timestep embedding of the raw t in [0, 1] (laid out [cos | sin]), a label table with one extra row for the
null class (classifier-free guidance), adaLN-Zero blocks and a zero-initialised final layer. Images are NHWC.
The REPA reference's SiT-S configs use a final-layer width of 768 whatever the hidden size (a known bug);
here the final layer always uses the hidden size.

Options of ERW's `models/sit.py` (LINs-lab/ERW @adf125d, from LightningDiT), off by default: `qk_norm`
(timm's per-head LayerNorm on q and k, eps 1e-5 with scale and bias; ERW's `--qk-norm`) and `use_rope`
(2-D axial rotary embedding of q and k after QK-norm, `jaxrep.nn.rope`; ERW's `--use_rope`). LayerNorms use
the exact two-pass variance: flax's fast E[x^2] - E[x]^2 drifts from PyTorch when token means are large.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.nn.attention import ATTENTION_IMPLS, heads_major_attention
from jaxrep.nn.dense import TokenDense
from jaxrep.nn.rope import apply_rope, axial_rope_tables

# (depth, hidden size, heads) of the paper's presets; params: DiT Table 1 (with learned sigma).
PRESETS = {
    "S": dict(depth=12, hidden_size=384, num_heads=6),
    "B": dict(depth=12, hidden_size=768, num_heads=12),
    "L": dict(depth=24, hidden_size=1024, num_heads=16),
    "XL": dict(depth=28, hidden_size=1152, num_heads=16),
}
PUBLISHED_PARAMS = {"S/2": 33.0e6, "B/2": 130.3e6, "L/2": 458.1e6, "XL/2": 675.1e6}

xavier = nn.initializers.xavier_uniform()
normal_002 = nn.initializers.normal(stddev=0.02)
zeros = nn.initializers.zeros


def sincos_1d(embed_dim: int, positions: np.ndarray) -> np.ndarray:
    """(M,) positions -> (M, embed_dim) as [sin | cos] with omega_i = 1 / 10000^(2i / embed_dim)."""
    omega = 1.0 / 10000 ** (np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0))
    angles = np.outer(positions.reshape(-1), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d(embed_dim: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Fixed 2-D position embedding (MAE recipe): (grid_h * grid_w, embed_dim), tokens row-major.

    The first half of the channels encodes the column index, the second half the row index.
    """
    rows, cols = np.meshgrid(np.arange(grid_h, dtype=np.float64), np.arange(grid_w, dtype=np.float64),
                             indexing="ij")
    return np.concatenate([sincos_1d(embed_dim // 2, cols), sincos_1d(embed_dim // 2, rows)], axis=1)


def timestep_frequencies(t: jax.Array, dim: int = 256, max_period: float = 10000.0) -> jax.Array:
    """t (B,) -> (B, dim) sinusoidal features laid out [cos | sin] (DiT's TimestepEmbedder), float32."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
    return x * (1.0 + scale[:, None]) + shift[:, None]


class TimestepEmbedder(nn.Module):
    hidden_size: int
    frequency_dim: int = 256
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        # The time embedding stays in float32 even under bf16 compute (precision of small t differences).
        h = nn.Dense(self.hidden_size, kernel_init=normal_002, name="mlp_0")(timestep_frequencies(t, self.frequency_dim))
        return nn.Dense(self.hidden_size, kernel_init=normal_002, name="mlp_2")(nn.silu(h))


def layer_norm(name: str, *, epsilon: float = 1e-6, affine: bool = False, dtype: Any = None) -> nn.LayerNorm:
    """PyTorch-matching LayerNorm: exact (two-pass) variance; `affine` adds torch's weight/bias (scale/bias)."""
    return nn.LayerNorm(epsilon=epsilon, use_bias=affine, use_scale=affine, use_fast_variance=False, dtype=dtype,
                        name=name)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (timm layout, as in DiT).

    qk_norm: LayerNorm over the head dimension of q and k (timm `qk_norm=True`: `nn.LayerNorm(head_dim)`,
    eps 1e-5, learned scale and bias shared by the heads). `rope` (cos, sin) tables (N, head_dim) rotate q
    and k after the norm (ERW's order). `impl`: the attention kernel (`jaxrep.nn.attention`); every one has
    the same parameters and output.
    """

    hidden_size: int
    num_heads: int
    dtype: Any = jnp.float32
    qk_norm: bool = False
    impl: str = "xla"

    def _qk(self, q, k, rope, token_axis: int):
        if self.qk_norm:
            q = layer_norm("q_norm", epsilon=1e-5, affine=True, dtype=self.dtype)(q)
            k = layer_norm("k_norm", epsilon=1e-5, affine=True, dtype=self.dtype)(k)
        if rope is not None:  # apply_rope takes (B, N, H, D)
            rotate = lambda x: apply_rope(x.swapaxes(1, token_axis), *rope).swapaxes(1, token_axis)  # noqa: E731
            q, k = rotate(q), rotate(k)
        return q, k

    @nn.compact
    def __call__(self, x: jax.Array, rope: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
        if self.impl not in ATTENTION_IMPLS:
            raise ValueError(f"model.attention_impl: must be one of {ATTENTION_IMPLS}, got {self.impl!r}")
        batch, tokens, width = x.shape
        qkv = TokenDense(3 * width, kernel_init=xavier, dtype=self.dtype, name="qkv")(x)
        qkv = qkv.reshape(batch, tokens, 3, self.num_heads, width // self.num_heads)
        if self.impl == "cpu_layout":
            q, k, v = qkv.transpose(2, 0, 3, 1, 4)  # each (B, H, N, D)
            q, k = self._qk(q, k, rope, token_axis=2)
            out = heads_major_attention(q, k, v).transpose(0, 2, 1, 3)
        else:
            q, k, v = (qkv[:, :, index] for index in range(3))  # each (B, N, H, D)
            q, k = self._qk(q, k, rope, token_axis=1)
            out = jax.nn.dot_product_attention(q, k, v, implementation=self.impl)
        return TokenDense(width, kernel_init=xavier, dtype=self.dtype, name="proj")(out.reshape(batch, tokens, width))


class SiTBlock(nn.Module):
    """adaLN-Zero transformer block: the conditioning c regresses shift/scale/gate for attention and MLP."""

    hidden_size: int
    num_heads: int
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32
    qk_norm: bool = False
    attention_impl: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, c: jax.Array, rope: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
        modulation = nn.Dense(6 * self.hidden_size, kernel_init=zeros, name="adaLN_modulation")(nn.silu(c))
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = jnp.split(modulation, 6, axis=-1)
        h = modulate(layer_norm("norm1")(x), shift_msa, scale_msa).astype(self.dtype)
        x = x + gate_msa[:, None] * Attention(self.hidden_size, self.num_heads, self.dtype, self.qk_norm,
                                              self.attention_impl, name="attn")(h, rope)
        h = modulate(layer_norm("norm2")(x), shift_mlp, scale_mlp).astype(self.dtype)
        h = TokenDense(int(self.hidden_size * self.mlp_ratio), kernel_init=xavier, dtype=self.dtype, name="fc1")(h)
        h = TokenDense(self.hidden_size, kernel_init=xavier, dtype=self.dtype, name="fc2")(
            nn.gelu(h, approximate=True))
        return x + gate_mlp[:, None] * h


class FinalLayer(nn.Module):
    hidden_size: int
    patch_size: int
    out_channels: int

    @nn.compact
    def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
        shift, scale = jnp.split(nn.Dense(2 * self.hidden_size, kernel_init=zeros, name="adaLN_modulation")(
            nn.silu(c)), 2, axis=-1)
        x = modulate(layer_norm("norm_final")(x), shift, scale)
        return TokenDense(self.patch_size**2 * self.out_channels, kernel_init=zeros, name="linear")(x)


class SiT(nn.Module):
    """SiT/DiT velocity model.

    Attributes:
      input_size: spatial size H = W of the input (image or latent).
      patch_size: p; the token grid is (H/p) x (H/p), tokens row-major.
      in_channels: C of the input (4 for SD-VAE latents).
      hidden_size, depth, num_heads, mlp_ratio: transformer shape.
      num_classes: labels are in [0, num_classes]; num_classes is the null class for CFG dropout.
      use_rope: 2-D rotary embedding of q and k in every block (ERW phase 2), besides the sin-cos embedding;
        needs head_dim = hidden_size / num_heads divisible by 4.
      qk_norm: per-head LayerNorm of q and k (adds `q_norm`/`k_norm` scale and bias to every block's attn).
      dtype: activation dtype (bf16 for mixed precision); parameters stay float32.
      attention_impl: "xla", "cudnn" (NVIDIA GPUs) or "cpu_layout" (`jaxrep.nn.attention`); same params and
        outputs, a different layout for the attention dots.
    """

    input_size: int = 32
    patch_size: int = 2
    in_channels: int = 4
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    dtype: Any = jnp.float32
    use_rope: bool = False
    qk_norm: bool = False
    attention_impl: str = "xla"

    @property
    def grid_size(self) -> int:
        return self.input_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        return self.grid_size**2

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, y: jax.Array, *, hidden_at: int | None = None):
        """Predicts the velocity.

        Args:
          x: x_t (B, H, W, C).
          t: times (B,) in [0, 1].
          y: labels (B,) in [0, num_classes] (num_classes = null label).
          hidden_at: 1-based block index k; if given, also return the token sequence (B, N, D) after block k
            (the residual stream after both gated adds, before any final norm: REPA's h_k).
        Returns:
          v (B, H, W, C), or (v, hidden) when hidden_at is given.
        """
        if hidden_at is not None and not 1 <= hidden_at <= self.depth:
            raise ValueError(f"hidden_at: must be in [1, {self.depth}], got {hidden_at}")
        batch, height, width, channels = x.shape
        p = self.patch_size
        tokens = nn.Conv(self.hidden_size, (p, p), strides=(p, p), padding="VALID",
                         kernel_init=nn.initializers.xavier_uniform(in_axis=(0, 1, 2), out_axis=-1),
                         dtype=self.dtype, name="x_embedder")(x.astype(self.dtype))
        grid_h, grid_w = height // p, width // p
        pos = jnp.asarray(sincos_2d(self.hidden_size, grid_h, grid_w), jnp.float32)
        h = tokens.reshape(batch, grid_h * grid_w, self.hidden_size).astype(jnp.float32) + pos[None]
        c = TimestepEmbedder(self.hidden_size, name="t_embedder")(t)
        c = c + nn.Embed(self.num_classes + 1, self.hidden_size, embedding_init=normal_002,
                         name="y_embedder")(y)
        rope = None
        if self.use_rope:
            try:
                rope = tuple(map(jnp.asarray, axial_rope_tables(self.hidden_size // self.num_heads, grid_h, grid_w)))
            except ValueError as error:
                raise ValueError(f"use_rope: {error} (hidden_size {self.hidden_size} / num_heads "
                                 f"{self.num_heads})") from None
        hidden = None
        for i in range(self.depth):
            h = SiTBlock(self.hidden_size, self.num_heads, self.mlp_ratio, self.dtype, self.qk_norm,
                         self.attention_impl, name=f"blocks_{i}")(h, c, rope)
            if hidden_at == i + 1:
                hidden = h
        out = FinalLayer(self.hidden_size, p, channels, name="final_layer")(h, c).astype(jnp.float32)
        v = out.reshape(batch, grid_h, grid_w, p, p, channels).transpose(0, 1, 3, 2, 4, 5)
        v = v.reshape(batch, height, width, channels)
        return v if hidden_at is None else (v, hidden)


def sit_preset(name: str, **overrides) -> SiT:
    """`sit_preset("XL/2", input_size=32, in_channels=4)` builds the paper's SiT-XL/2."""
    try:
        size, patch = name.split("/")
        shape = PRESETS[size]
    except (ValueError, KeyError):
        raise ValueError(f"model.preset: unknown SiT preset {name!r}; choose from "
                         f"{[f'{k}/{p}' for k in PRESETS for p in (2, 4, 8)]}") from None
    kwargs = dict(shape, patch_size=int(patch))
    kwargs.update(overrides)
    return SiT(**kwargs)


def count_params(model: SiT, batch: int = 1) -> int:
    """Parameter count through `jax.eval_shape` (no allocation)."""
    x = jax.ShapeDtypeStruct((batch, model.input_size, model.input_size, model.in_channels), jnp.float32)
    t = jax.ShapeDtypeStruct((batch,), jnp.float32)
    y = jax.ShapeDtypeStruct((batch,), jnp.int32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), x, t, y)
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes))

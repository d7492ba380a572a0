"""2-D axial rotary position embedding (RoPE) for attention on a token grid.

RoPE (Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position Embedding", arXiv 2104.09864,
eq. 34) rotates each pair of query/key channels by an angle proportional to the token position, so that
q_m . k_n depends on the positions only through m - n. The 2-D axial form used here is the one of EVA-02's
`VisionRotaryEmbeddingFast` (`baaivision/EVA`), as vendored in LightningDiT's `models/pos_embed.py`
(`hustvl/LightningDiT` @2725fed) and imported by ERW's `models/sit.py` (`LINs-lab/ERW` @adf125d), with
ERW's arguments (dim = head_dim / 2, pt_seq_len = grid size, default theta 10000 and `freqs_for='lang'`):

- the head dimension D splits in two halves of a = D / 2 channels: the first half rotates with the token's
  row index, the second half with its column index;
- within a half, channel pairs are adjacent (interleaved, (x_{2j}, x_{2j+1})), pair j at frequency
  theta^(-2j / a), j = 0 .. a/2 - 1, so D must be divisible by 4;
- positions are the integer grid indices (ERW's ft_seq_len = pt_seq_len, so no rescaling); tokens row-major.

ERW applies it to q and k after QK-norm and before the scaled dot product, in every block, on top of the
absolute sin-cos embedding added at the input.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["apply_rope", "axial_rope_angles", "axial_rope_tables"]


def axial_rope_angles(head_dim: int, grid_h: int, grid_w: int, theta: float = 10000.0) -> np.ndarray:
    """Rotation angles of every channel at every grid position, (grid_h * grid_w, head_dim) float64.

    Entry [r * grid_w + c, i] is the angle of channel i of token (r, c); both channels of a pair share it.
    Channels [0, D/2) use r, channels [D/2, D) use c.

    Raises:
      ValueError: head_dim not divisible by 4 (two axes, each a whole number of channel pairs).
    """
    if head_dim % 4 or head_dim <= 0:
        raise ValueError(f"2-D RoPE needs a head dimension divisible by 4, got {head_dim}")
    axis_dim = head_dim // 2
    frequencies = theta ** (-np.arange(0, axis_dim, 2, dtype=np.float64) / axis_dim)  # (D/4,)
    frequencies = np.repeat(frequencies, 2)  # one angle per channel of a pair: (D/2,)
    rows, cols = np.meshgrid(np.arange(grid_h, dtype=np.float64), np.arange(grid_w, dtype=np.float64),
                             indexing="ij")
    return np.concatenate([np.outer(rows.reshape(-1), frequencies), np.outer(cols.reshape(-1), frequencies)],
                          axis=1)


def axial_rope_tables(head_dim: int, grid_h: int, grid_w: int,
                      theta: float = 10000.0) -> tuple[np.ndarray, np.ndarray]:
    """(cos, sin) of `axial_rope_angles`, each (grid_h * grid_w, head_dim) float32.

    For a square grid these are the `freqs_cos` / `freqs_sin` buffers of `VisionRotaryEmbeddingFast`
    (ERW's `feat_rope`), up to float32 rounding of the angles.
    """
    angles = axial_rope_angles(head_dim, grid_h, grid_w, theta)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def _rotate_pairs(x: jax.Array) -> jax.Array:
    """(x_0, x_1, x_2, x_3, ...) -> (-x_1, x_0, -x_3, x_2, ...) on the last axis."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    return jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates queries or keys by their positions: x * cos + rotate_pairs(x) * sin (RoFormer eq. 34).

    Args:
      x: (B, N, H, D) queries or keys, tokens in the row-major order of the tables.
      cos, sin: (N, D) from `axial_rope_tables`.

    Returns:
      (B, N, H, D) in x's dtype; the rotation is computed in float32.
    """
    if x.ndim != 4 or cos.shape != (x.shape[1], x.shape[3]) or sin.shape != cos.shape:
        raise ValueError(f"apply_rope: x (B, N, H, D) = {x.shape} needs (N, D) tables, got {cos.shape}, "
                         f"{sin.shape}")
    x32 = x.astype(jnp.float32)
    cos, sin = jnp.asarray(cos, jnp.float32)[:, None], jnp.asarray(sin, jnp.float32)[:, None]
    return (x32 * cos + _rotate_pairs(x32) * sin).astype(x.dtype)

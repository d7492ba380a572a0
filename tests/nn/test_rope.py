"""2-D axial RoPE: rotation properties and parity with EVA-02's VisionRotaryEmbeddingFast (ERW's feat_rope)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.nn.rope import apply_rope, axial_rope_angles, axial_rope_tables


def official_rope_buffers(dim: int, pt_seq_len: int, theta: float = 10000.0):
    """`VisionRotaryEmbeddingFast(dim, pt_seq_len)` buffers (LightningDiT models/pos_embed.py), in float32 NumPy.

    ERW builds it with dim = head_dim // 2 and pt_seq_len = ft_seq_len = the token grid side.
    """
    freqs = np.float32(1.0) / (np.float32(theta) ** (np.arange(0, dim, 2)[: dim // 2].astype(np.float32) / dim))
    positions = (np.arange(pt_seq_len) / pt_seq_len).astype(np.float32) * pt_seq_len
    freqs = np.einsum("i,f->if", positions, freqs).astype(np.float32)
    freqs = np.repeat(freqs, 2, axis=-1)  # '... n -> ... (n r)', r=2
    grid = np.concatenate([np.broadcast_to(freqs[:, None, :], (pt_seq_len, pt_seq_len, dim)),
                           np.broadcast_to(freqs[None, :, :], (pt_seq_len, pt_seq_len, dim))], axis=-1)
    grid = grid.reshape(-1, 2 * dim)
    return np.cos(grid), np.sin(grid)


def official_rope_forward(x, freqs_cos, freqs_sin):
    """forward(t) = t * freqs_cos + rotate_half(t) * freqs_sin, rotate_half on interleaved pairs."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    rotated = np.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)
    return x * freqs_cos + rotated * freqs_sin


def random(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("head_dim, grid", [(8, 4), (32, 8), (72, 16)])  # 72 x 16: SiT-XL/2 on 32 x 32 latents
def test_parity_with_official_formula(head_dim, grid):
    cos, sin = axial_rope_tables(head_dim, grid, grid)
    official_cos, official_sin = official_rope_buffers(head_dim // 2, grid)
    assert cos.shape == official_cos.shape == (grid * grid, head_dim)
    np.testing.assert_allclose(cos, official_cos, atol=2e-6)
    np.testing.assert_allclose(sin, official_sin, atol=2e-6)
    # ERW's attention holds q as (B, H, N, D); jaxrep's as (B, N, H, D).
    q = random((2, grid * grid, 3, head_dim))
    expected = official_rope_forward(q.transpose(0, 2, 1, 3), official_cos, official_sin).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(apply_rope(jnp.asarray(q), cos, sin), expected, atol=2e-5)


def test_layout_first_half_rows_second_half_columns():
    angles = axial_rope_angles(8, 3, 5)
    row, col = 2, 3
    frequencies = [1.0, 1.0, 0.01, 0.01]  # theta^(-2j / 4), each for one interleaved pair
    expected = [row * f for f in frequencies] + [col * f for f in frequencies]
    np.testing.assert_allclose(angles[row * 5 + col], expected, rtol=1e-12)


def test_identity_at_origin_and_norm_preserved():
    cos, sin = axial_rope_tables(16, 4, 4)
    x = jnp.asarray(random((2, 16, 3, 16)))
    rotated = apply_rope(x, cos, sin)
    np.testing.assert_allclose(rotated[:, 0], x[:, 0], rtol=0, atol=0)  # grid position (0, 0)
    assert not np.allclose(rotated[:, 1:], x[:, 1:])
    np.testing.assert_allclose(jnp.linalg.norm(rotated, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5)


def test_scores_depend_only_on_relative_position():
    # q at (r, c), k at (r', c'); shifting both by the same (dr, dc) leaves q.k unchanged (RoFormer eq. 16).
    grid, head_dim = 6, 16
    cos, sin = axial_rope_tables(head_dim, grid, grid)
    q, k = random((head_dim,), 1), random((head_dim,), 2)

    def score(q_pos, k_pos):
        tokens = np.zeros((1, grid * grid, 1, head_dim), np.float32)
        tokens[0, q_pos[0] * grid + q_pos[1], 0] = q
        tokens[0, k_pos[0] * grid + k_pos[1], 0] = k
        rotated = apply_rope(jnp.asarray(tokens), cos, sin)[0, :, 0]
        return float(jnp.dot(rotated[q_pos[0] * grid + q_pos[1]], rotated[k_pos[0] * grid + k_pos[1]]))

    base = score((1, 2), (0, 4))
    for shift in [(1, 0), (0, 1), (3, 1), (4, 0)]:
        shifted = score((1 + shift[0], 2 + shift[1]), (shift[0], 4 + shift[1]))
        np.testing.assert_allclose(shifted, base, rtol=1e-5)
    # ... but a different offset gives a different score, on either axis.
    assert abs(score((1, 2), (1, 4)) - base) > 1e-3
    assert abs(score((1, 2), (0, 3)) - base) > 1e-3


def test_jit_bfloat16_and_bad_shapes():
    cos, sin = axial_rope_tables(8, 2, 2)
    x = jnp.asarray(random((1, 4, 2, 8))).astype(jnp.bfloat16)
    out = jax.jit(apply_rope)(x, cos, sin)
    assert out.dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="divisible by 4"):
        axial_rope_tables(6, 2, 2)
    with pytest.raises(ValueError, match=r"needs \(N, D\) tables"):
        apply_rope(x[:, :3], cos, sin)

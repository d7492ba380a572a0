"""REPA: representation alignment of diffusion-transformer hidden states (Yu et al., ICLR 2025, arXiv 2410.06940).

The SiT hidden state after block k, h (B, N, D), is mapped token-wise by a small MLP h_phi and pulled
towards the frozen encoder's patch tokens y* (B, N, d_enc) by the negative cosine similarity (paper
Sec. 3.2, the L_REPA objective; code `sihyun-yu/REPA:loss.py` SILoss):

  L_REPA = - E_b [ (1/N) sum_n cos(y*_{b,n}, h_phi(h_{b,n})) ]

The total objective is L_velocity + lambda * L_REPA with lambda = 0.5 (`--proj-coeff`).
"""

from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrep.nn.dense import TokenDense

__all__ = ["l2_normalize", "check_token_shapes", "repa_loss", "repa_loss_per_example", "MLPProjector"]


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """x / max(||x||_2, eps) over the last axis, in float32 (PyTorch `F.normalize(x, dim=-1)`)."""
    x = x.astype(jnp.float32)
    # sqrt(max(|x|^2, eps^2)) == max(|x|, eps), without the NaN gradient of the norm at x = 0.
    squared_norm = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(squared_norm, eps * eps))


def check_token_shapes(projected: jax.Array, target: jax.Array, what: str) -> None:
    """Raises a ValueError naming the mismatch unless both are (B, N, D) token arrays of one shape."""
    chex.assert_rank([projected, target], 3)
    if projected.shape[:2] != target.shape[:2] or projected.shape[-1] != target.shape[-1]:
        raise ValueError(
            f"{what}: projected tokens {projected.shape} and target tokens {target.shape} differ "
            f"(batch, token count N, width D must match). A different N means the encoder grid differs "
            f"from the SiT grid: resize the image (REPA) or the tokens (`resize_token_grid`); a different "
            f"D means the projector's output width is not the encoder's width.")


def repa_loss_per_example(projected: jax.Array, target: jax.Array) -> jax.Array:
    """REPA's L_REPA per image: -(1/N) sum_n cos(h_phi(h)_n, y*_n) over the N patch tokens (REPA Eq. 8).

    Each token is L2-normalised like `F.normalize` (eps 1e-12) in float32. The target is wrapped in
    `stop_gradient`: the encoder is frozen.

    Args:
      projected: h_phi(h), (B, N, D).
      target: encoder patch tokens y*, (B, N, D).

    Returns:
      float32 (B,) in [-1, 1]; -1 where every projected token points along its target.
    """
    check_token_shapes(projected, target, "repa_loss")
    target = jax.lax.stop_gradient(target)
    cosine = jnp.sum(l2_normalize(projected) * l2_normalize(target), axis=-1)
    return -jnp.mean(cosine, axis=-1)


def repa_loss(projected: jax.Array, target: jax.Array) -> jax.Array:
    """L_REPA, the batch mean of `repa_loss_per_example` (REPA's `proj_loss`): float32 scalar in [-1, 1]."""
    return jnp.mean(repa_loss_per_example(projected, target))


class MLPProjector(nn.Module):
    """REPA projector h_phi (`REPA:models/sit.py` build_mlp): Linear -> SiLU -> Linear -> SiLU -> Linear.

    Token-wise D -> hidden_dim -> hidden_dim -> out_dim. Xavier-uniform weights and zero biases, as REPA's
    `initialize_weights` applies to every Linear of the SiT.

    Attributes:
      out_dim: encoder width d_enc (768 for DINOv2-B, 1024 for -L, 1536 for -g).
      hidden_dim: hidden width (2048 in REPA).
      dtype: computation dtype.
    """

    out_dim: int
    hidden_dim: int = 2048
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        """tokens: (B, N, D) -> (B, N, out_dim)."""
        chex.assert_rank(tokens, 3)
        dense = lambda features, index: TokenDense(  # noqa: E731  (named as nn.Dense auto-names them)
            features, dtype=self.dtype, kernel_init=nn.initializers.xavier_uniform(), name=f"Dense_{index}")
        hidden = nn.silu(dense(self.hidden_dim, 0)(tokens))
        hidden = nn.silu(dense(self.hidden_dim, 1)(hidden))
        return dense(self.out_dim, 2)(hidden)

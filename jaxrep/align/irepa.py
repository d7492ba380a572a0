"""iREPA: improved REPA targets and projector (Singh et al. 2026; code `End2End-Diffusion/iREPA` @99ad4ac).

Two changes to REPA, both kept here as pure pieces; the loss itself is unchanged (`repa_loss` on the
normalised target, lambda 1.0 in the LDM recipe):
1. `ConvProjector`: one 3x3 convolution on the token grid replaces the MLP projector
   (`iREPA:ldm/models/sit.py` ProjectionLayer, type "conv").
2. `spatial_normalize`: the target tokens are z-scored per image and channel over the token axis
   (`iREPA:ldm/utils.py` spatial_zscore).

Code vs paper: the paper writes y = (x - E[x]) / sqrt(Var[x] + eps); the released code computes
(x - gamma * mean) / (std + eps) with torch's unbiased std, gamma 0.6 in the LDM trainer. The code is the
default here; `gamma=1.0, eps_in_sqrt=True` gives the paper's form. Also, the README's kernel 3 is used,
although `ldm/train.py` passes an argparse default of 1 (a 1x1 conv) when the flag is not given.
"""

from __future__ import annotations

import math
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["spatial_normalize", "ConvProjector"]


def spatial_normalize(
    tokens: jax.Array,
    gamma: float = 0.6,
    eps: float = 1e-6,
    *,
    ddof: int = 1,
    eps_in_sqrt: bool = False,
) -> jax.Array:
    """Spatial z-score of encoder tokens, per image and channel over the N tokens (iREPA change 2).

    Default (released code): (y - gamma * mean_N(y)) / (std_N(y) + eps) with the unbiased std (ddof=1,
    PyTorch `Tensor.std`; note `jnp.std` defaults to ddof=0). Paper form: gamma=1, eps_in_sqrt=True,
    i.e. (y - mean) / sqrt(var + eps). Computed in float32.

    Args:
      tokens: encoder patch tokens y, (B, N, D).
      gamma: fraction of the per-image mean token removed (0.6 LDM trainer, 0.8 JiT, 1.0 plain z-score).
      eps: added to the std (or to the variance with `eps_in_sqrt`).
      ddof: delta degrees of freedom of the std over N.
      eps_in_sqrt: put eps inside the square root (paper) instead of adding it to the std (code).

    Returns:
      float32 (B, N, D).
    """
    chex.assert_rank(tokens, 3)
    if tokens.shape[1] <= ddof:
        raise ValueError(f"spatial_normalize needs more than ddof={ddof} tokens, got shape {tokens.shape}")
    tokens = tokens.astype(jnp.float32)
    mean = jnp.mean(tokens, axis=1, keepdims=True)
    variance = jnp.var(tokens, axis=1, keepdims=True, ddof=ddof)
    scale = jnp.sqrt(variance + eps) if eps_in_sqrt else jnp.sqrt(variance) + eps
    return (tokens - gamma * mean) / scale


def _torch_conv_bias_init(fan_in: int):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default Conv2d bias init."""
    bound = 1.0 / math.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class ConvProjector(nn.Module):
    """iREPA projector (change 1): tokens -> row-major (H, W) grid -> k x k conv (SAME, bias) -> tokens.

    Token n sits at row n // W, column n % W, the patch-embedding order of SiT and ViT. Zero padding at the
    border (PyTorch's padding_mode "zeros"). Initialised like PyTorch's default Conv2d (weights and bias
    U(+-1/sqrt(fan_in))), since REPA-style `initialize_weights` re-initialises only Linear layers
    (assumed to hold for iREPA's conv; not checked in its code).

    Attributes:
      out_dim: encoder width d_enc.
      kernel_size: conv side (3 in the paper/README).
      grid_hw: token grid (H, W); None means square, H = W = sqrt(N).
      dtype: computation dtype.
    """

    out_dim: int
    kernel_size: int = 3
    grid_hw: tuple[int, int] | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        """tokens: (B, N, D) -> (B, N, out_dim)."""
        chex.assert_rank(tokens, 3)
        batch, count, width = tokens.shape
        if self.grid_hw is None:
            side = math.isqrt(count)
            if side * side != count:
                raise ValueError(f"ConvProjector: {count} tokens are not a square grid; pass grid_hw")
            grid_hw = (side, side)
        else:
            grid_hw = tuple(self.grid_hw)
            if grid_hw[0] * grid_hw[1] != count:
                raise ValueError(f"ConvProjector: grid_hw {grid_hw} does not hold {count} tokens")
        fan_in = width * self.kernel_size**2
        conv = nn.Conv(
            self.out_dim, (self.kernel_size, self.kernel_size), padding="SAME", use_bias=True,
            dtype=self.dtype, kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
            bias_init=_torch_conv_bias_init(fan_in), name="conv")
        grid = conv(tokens.reshape(batch, grid_hw[0], grid_hw[1], width))
        return grid.reshape(batch, count, self.out_dim)

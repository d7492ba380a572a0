"""`TokenDense`: `flax.linen.Dense` on token tensors as one 2-D matmul.

A Dense on (B, N, D) tokens lowers to a dot whose weight gradient X^T dY contracts two axes (B and N).
XLA:CPU then copies the activations into a transposed buffer before every weight-gradient matmul; with the
leading axes flattened first, the weight gradient is a 2-D dot contracting one axis, which XLA:CPU runs
without the copy. On the REPA step at the `cpu_repa` shape this took the copies from 36 % of op time to 3 %
(`benchmarks/repa_step.py`; figures in docs/results/performance.md section 8). On accelerators the reshapes
are bitcasts.
"""

from __future__ import annotations

import flax.linen as nn
import jax

__all__ = ["TokenDense"]


class TokenDense(nn.Dense):
    """`nn.Dense` (same fields, parameters, initialisers and result) applied to (..., in) as (prod(...), in)."""

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        """inputs: (..., in) -> (..., features)."""
        flat = super().__call__(inputs.reshape(-1, inputs.shape[-1]))
        return flat.reshape(*inputs.shape[:-1], self.features)

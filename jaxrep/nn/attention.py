"""Attention kernels for the backend (`model.attention_impl`), on one parameter layout (timm's fused qkv).

- "xla": `jax.nn.dot_product_attention(implementation="xla")` on token-major (B, N, H, D) q/k/v; XLA inserts
  the transposes its dots need.
- "cudnn": the same call with implementation "cudnn" (cuDNN's fused attention: NVIDIA GPUs only).
- "cpu_layout": heads-major: the qkv projection is one einsum that writes q/k/v as (3, B, H, N, D) directly
  (`DenseEinsum`), the two attention dots (`heads_major_attention`) are batched over (B, H) with contiguous
  (N, D) operands, and the output projection contracts (H, D) straight from that layout, so no transposes
  are left around the attention dots for XLA:CPU to materialise. The softmax runs in float32, as XLA's
  `dot_product_attention` does.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["ATTENTION_IMPLS", "DenseEinsum", "heads_major_attention"]

ATTENTION_IMPLS = ("xla", "cudnn", "cpu_layout")


class DenseEinsum(nn.Module):
    """`nn.Dense`'s parameters (`kernel` (in, features), `bias` (features,), float32, the same init) applied
    through an einsum whose operands are the kernel reshaped to `kernel_shape` and the bias to `bias_shape`,
    so a projection can produce (or consume) a multi-axis layout without a separate transpose."""

    features: int
    dtype: Any = jnp.float32
    kernel_init: Callable = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array, equation: str, kernel_shape: tuple, bias_shape: tuple) -> jax.Array:
        in_features = math.prod(kernel_shape) // self.features
        kernel = self.param("kernel", self.kernel_init, (in_features, self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        return jnp.einsum(equation, x, kernel.reshape(kernel_shape)) + bias.reshape(bias_shape)


def heads_major_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """softmax(q k^T / sqrt(D)) v for heads-major (B, H, N, D) q, k, v; float32 logits and softmax."""
    logits = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32) * q.shape[-1] ** -0.5
    return jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(logits, axis=-1).astype(v.dtype), v)

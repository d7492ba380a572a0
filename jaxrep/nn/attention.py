"""Attention kernels for the backend (`model.attention_impl`), between the same fused qkv and output projections.

- "xla": `jax.nn.dot_product_attention(implementation="xla")` on token-major (B, N, H, D) q/k/v; XLA inserts
  the transposes its dots need (on XLA:CPU, copies of the (B, H, N, N) probabilities in the backward pass).
- "cudnn": the same call with implementation "cudnn" (cuDNN's fused attention: NVIDIA GPUs only).
- "cpu_layout": q/k/v transposed once to heads-major (B, H, N, D), the two attention dots batched over (B, H)
  with contiguous (N, D) operands (`heads_major_attention`), the output transposed back: the only copies
  are of q/k/v and the output, not of the probabilities. 26 % faster than "xla" on XLA:CPU at N = 256 tokens
  (SiT-S/2), level at N = 64 (docs/results/performance.md section 8b). The softmax runs in float32, as
  XLA's `dot_product_attention` does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["ATTENTION_IMPLS", "heads_major_attention"]

ATTENTION_IMPLS = ("xla", "cudnn", "cpu_layout")


def heads_major_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """softmax(q k^T / sqrt(D)) v for heads-major (B, H, N, D) q, k, v; float32 logits and softmax."""
    logits = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32) * q.shape[-1] ** -0.5
    return jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(logits, axis=-1).astype(v.dtype), v)

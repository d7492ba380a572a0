"""PyTorch's default `nn.Linear` initialisation, for ports whose official code relies on it (BEER, potential flows)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def torch_uniform(fan_in: int) -> nn.initializers.Initializer:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for both kernel and bias of `nn.Linear`."""
    bound = 1.0 / jnp.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_dense(x: jax.Array, features: int, name: str) -> jax.Array:
    """A Dense layer initialised like `torch.nn.Linear(x.shape[-1], features)`; call inside `nn.compact`."""
    fan_in = x.shape[-1]
    return nn.Dense(features, kernel_init=torch_uniform(fan_in), bias_init=torch_uniform(fan_in), name=name)(x)

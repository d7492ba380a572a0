"""Actor and critic MLPs of DDPG/BEER (BEER.py `Actor`, `Critic`): 256-256 ReLU, deterministic tanh policy.

The critic can return its penultimate features phi(s, a) (post-ReLU, what BEER regularises and what the
rank metrics measure); its last layer is named `head`, so `params["head"]["kernel"]` is BEER's w, (d, 1).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrep.nn.torch_init import torch_dense

INIT_SCHEMES = ("torch", "flax")  # PyTorch's default Linear init (the official code's), or flax's defaults


def _dense(x: jax.Array, features: int, init: str, name: str) -> jax.Array:
    if init == "torch":
        return torch_dense(x, features, name)
    if init == "flax":
        return nn.Dense(features, name=name)(x)
    raise ValueError(f"init must be one of {INIT_SCHEMES}, got {init!r}")


class Actor(nn.Module):
    """pi(s) = tanh(MLP(s)) in [-1, 1]^A.

    Attributes:
      action_size: A.
      hidden_sizes: widths of the ReLU layers.
      init_scheme: "torch" (the official code's PyTorch default init) or "flax" (lecun-normal kernels, zero bias).
    """

    action_size: int
    hidden_sizes: Sequence[int] = (256, 256)
    init_scheme: str = "torch"

    @nn.compact
    def __call__(self, observation: jax.Array) -> jax.Array:
        """observation: (..., obs_size) -> action: (..., A)."""
        x = observation
        for i, width in enumerate(self.hidden_sizes):
            x = nn.relu(_dense(x, width, self.init_scheme, f"hidden_{i}"))
        return jnp.tanh(_dense(x, self.action_size, self.init_scheme, "head"))


class Critic(nn.Module):
    """Q(s, a) = w^T phi(s, a) + b with phi = MLP([s, a]) post-ReLU.

    Attributes:
      hidden_sizes: widths of the ReLU layers; the last one is the feature size d.
      init_scheme: as for `Actor`.
    """

    hidden_sizes: Sequence[int] = (256, 256)
    init_scheme: str = "torch"

    @nn.compact
    def __call__(self, observation: jax.Array, action: jax.Array, return_features: bool = False):
        """observation: (..., obs_size), action: (..., A) -> q: (...,), plus phi: (..., d) if `return_features`."""
        x = jnp.concatenate([observation, action], axis=-1)
        for i, width in enumerate(self.hidden_sizes):
            x = nn.relu(_dense(x, width, self.init_scheme, f"hidden_{i}"))
        q = _dense(x, 1, self.init_scheme, "head")[..., 0]
        return (q, x) if return_features else q


def critic_head_kernel(critic_params) -> jax.Array:
    """The critic's last Dense kernel w: (d, 1), BEER's `critic.l3.weight` (transposed)."""
    return critic_params["head"]["kernel"]

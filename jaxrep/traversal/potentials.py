"""K potentials u_k(z, t) with stacked parameters (Song et al., ICML 2023, "Latent Traversals in Generative
Models as Potential Flows": one scalar potential per traversal, the flow follows its gradient).

Each potential is the official code's MLP (KingJamesSong/PDETraversal `lib/WavePDE.py` `MLP`, all widths = d):

    h_z = tanh(W_z z)                                       (x-branch)
    h_t = W_2 gelu(W_1 emb(t))                              (sinusoidal time embedding, as in diffusion models)
    u   = tanh(w_o^T tanh(W_f (h_z + h_t)))                 (the final tanh is dropped for StyleGAN2 upstream)

plus one learnable wave speed c_k per potential (initialised at 1). The K parameter sets are stacked on a
leading axis (a vmapped init) instead of a Python list of modules, so the potential index k can be a traced
integer: `potential(params, k)` gathers row k of every leaf, and one compiled step serves every k.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrep.nn.torch_init import torch_dense

# u(z: (d,), t: ()) -> (): one potential with its parameters bound.
Potential = Callable[[jax.Array, jax.Array], jax.Array]


def sinusoidal_embedding(t: jax.Array, dim: int) -> jax.Array:
    """Transformer/diffusion time embedding of a scalar: concat[sin(t f), cos(t f)] (+ [0] if dim is odd), (dim,).

    f_j = exp(-j ln(10000) / (half - 1)), j < half = dim // 2 (the official `SinusoidalPositionEmbeddings`; the
    denominator is clamped at 1 so that dim = 2, 3 do not divide by zero).

    Deviation for odd dim: the official embedding has 2 * (dim // 2) = dim - 1 entries and its next layer is
    `nn.Linear(dim, dim)`, so an odd latent size fails there with a shape error (the official runs use
    d = 226, 324, even). Padding one zero keeps the time layer d x d as in the official MLP; for even dim the
    embedding is exactly the official one.
    """
    half = dim // 2
    frequencies = jnp.exp(-jnp.arange(half) * (math.log(10000.0) / max(half - 1, 1)))
    angles = jnp.asarray(t, jnp.float32) * frequencies
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles), jnp.zeros((dim % 2,), jnp.float32)])


class PotentialMLP(nn.Module):
    """One potential u(z, t) for a single latent z: (d,) and scalar time t: () -> scalar.

    Attributes:
      width: hidden width (the official code uses the latent dimension d).
      output_tanh: bound u in (-1, 1) (official default; the StyleGAN2 runs drop it).
    """

    width: int
    output_tanh: bool = True

    @nn.compact
    def __call__(self, z: jax.Array, t: jax.Array) -> jax.Array:
        chex.assert_rank([z, t], [1, 0])
        # PyTorch-default init as in the official code: it sets the initial size of grad u.
        h_z = jnp.tanh(torch_dense(z, self.width, "z_in"))
        h_t = torch_dense(sinusoidal_embedding(t, self.width), self.width, "t_in")
        h_t = torch_dense(nn.gelu(h_t, approximate=False), self.width, "t_out")  # torch GELU is the erf form
        u = torch_dense(jnp.tanh(torch_dense(h_z + h_t, self.width, "fuse")), 1, "out")[0]
        return jnp.tanh(u) if self.output_tanh else u


@dataclasses.dataclass(frozen=True)
class MLPPotentials:
    """The K potential MLPs and their wave speeds; a static description, parameters live in the pytree.

    params = {"mlp": PotentialMLP params with a leading (K,) axis on every leaf, "wave_speed": (K,)}.

    Attributes:
      num_potentials: K, the number of traversals.
      latent_dim: d.
      width: hidden width; None means d (the official choice).
      output_tanh: see `PotentialMLP`.
    """

    num_potentials: int
    latent_dim: int
    width: int | None = None
    output_tanh: bool = True

    @property
    def module(self) -> PotentialMLP:
        return PotentialMLP(width=self.width or self.latent_dim, output_tanh=self.output_tanh)

    def init(self, key: jax.Array) -> dict[str, Any]:
        keys = jax.random.split(key, self.num_potentials)
        z, t = jnp.zeros((self.latent_dim,)), jnp.zeros(())
        stacked = jax.vmap(lambda k: self.module.init(k, z, t)["params"])(keys)
        return {"mlp": stacked, "wave_speed": jnp.ones((self.num_potentials,), jnp.float32)}

    def potential(self, params: dict[str, Any], k: jax.Array | int) -> Potential:
        """u_k(z, t) for a (possibly traced) integer k in [0, K)."""
        selected = jax.tree.map(lambda leaf: leaf[k], params["mlp"])
        return lambda z, t: self.module.apply({"params": selected}, z, t)

    def wave_speed(self, params: dict[str, Any], k: jax.Array | int) -> jax.Array:
        """c_k, scalar; the PDE coefficient is c_k^2."""
        return params["wave_speed"][k]

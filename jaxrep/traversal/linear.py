"""Linear latent directions, the standard traversal baseline (Voynov & Babenko, ICML 2020, "Unsupervised
Discovery of Interpretable Directions in the GAN Latent Space"), written as a potential family.

The linear potential u_k(z, t) = <a_k, z> / ||a_k|| has the constant gradient a_k / ||a_k||, so the rollout
z <- z + step * grad u_k is the straight unit-speed walk along direction k. The same rollout, pair
construction and classifier (`jaxrep.traversal.classifier`) then train both methods; only the PDE terms
differ: a linear potential has zero second derivatives (the wave and heat residuals vanish identically) and
a non-zero gradient at t = 0 (the initial condition cannot hold), so the baseline trains on the classifier
loss alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrep.traversal.potentials import Potential


@dataclasses.dataclass(frozen=True)
class LinearDirections:
    """K learnable directions a_k in R^d; params = {"directions": (K, d)}, rows normalised on use.

    Exposes the interface of `MLPPotentials` (`init`, `potential`, `wave_speed`), so every function that
    takes a potential family takes this one.
    """

    num_potentials: int
    latent_dim: int

    def init(self, key: jax.Array) -> dict[str, Any]:
        return {"directions": jax.random.normal(key, (self.num_potentials, self.latent_dim), jnp.float32)}

    def direction(self, params: dict[str, Any], k: jax.Array | int) -> jax.Array:
        """Unit direction a_k / ||a_k||, (d,)."""
        a = params["directions"][k]
        return a / jnp.maximum(jnp.linalg.norm(a), 1e-12)

    def potential(self, params: dict[str, Any], k: jax.Array | int) -> Potential:
        direction = self.direction(params, k)
        return lambda z, t: jnp.dot(direction, z)

    def wave_speed(self, params: dict[str, Any], k: jax.Array | int) -> jax.Array:
        """No PDE is imposed on a linear potential; 1 keeps the interface."""
        del params, k
        return jnp.ones((), jnp.float32)

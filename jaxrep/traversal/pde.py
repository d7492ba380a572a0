"""PDE residuals of a scalar potential u(z, t), z: (d,), t: () (Song et al., ICML 2023).

The traversal follows grad_z u; the potential is asked to solve a PDE in (z, t):

    wave             u_tt = c^2 L[u]            (the paper's main choice; the official code's only one)
    heat (diffusion) u_t  = c^2 L[u]
    Hamilton-Jacobi  u_t + 1/2 ||grad_z u||^2 = 0   (its characteristics are the Benamou-Brenier optimal-
                                                     transport paths; c is not used)

The paper's equation and section numbers are not cited (the PDF was not checked); the names are unambiguous.

The spatial operator L is selectable:
- "hessian_rowsum" (default, for parity): the official code's `u_zz = grad(sum_j du/dz_j, z)`, i.e. the
  Hessian row sums H 1, a d-vector, so the residual is a d-vector that broadcasts the scalar time term.
  It equals the Laplacian only on functions of (1^T z) / sqrt(d); e.g. a wave travelling along 1 / sqrt(d).
- "laplacian": the exact trace of the Hessian (d forward-over-reverse products, fine for small d).
- "hutchinson": an unbiased estimate of the trace, mean_p v_p^T H v_p with Rademacher probes v_p; exact
  whenever H is diagonal.

Time derivatives are forward-mode (jvp in t, twice for u_tt) and per sample. The official code sums u_t and
u_tt over the batch (t is one (1, 1) tensor shared by the batch, and `grad(u.sum(), t)` adds every sample's
derivative), so its time term grows with the batch size; here each sample has its own u_tt.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from jaxrep.traversal.potentials import Potential

EQUATIONS = ("wave", "heat", "hamilton_jacobi")
SPATIAL_OPERATORS = ("hessian_rowsum", "laplacian", "hutchinson")


def time_derivatives(u: Potential, z: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(du/dt, d^2u/dt^2) at (z, t), both scalars, by forward mode in t."""
    t = jnp.asarray(t, jnp.float32)
    one = jnp.ones_like(t)

    def u_t(s):
        return jax.jvp(lambda r: u(z, r), (s,), (one,))[1]

    first, second = jax.jvp(u_t, (t,), (one,))
    return first, second


def spatial_operator(u: Potential, z: jax.Array, t: jax.Array, *, operator: str = "hessian_rowsum",
                     key: jax.Array | None = None, num_probes: int = 1) -> jax.Array:
    """L[u](z, t): (d,) for "hessian_rowsum", a scalar for "laplacian" and "hutchinson".

    Args:
      u: the potential, u(z: (d,), t: ()) -> ().
      z: (d,) latent.
      t: () time.
      operator: one of SPATIAL_OPERATORS (module docstring).
      key: PRNG key for the Hutchinson probes; required by "hutchinson" only.
      num_probes: Hutchinson probes per point.
    """
    chex.assert_rank(z, 1)
    grad_z = jax.grad(u, argnums=0)

    def hvp(v):
        return jax.jvp(lambda x: grad_z(x, t), (z,), (v,))[1]

    if operator == "hessian_rowsum":
        return hvp(jnp.ones_like(z))
    if operator == "laplacian":
        return jnp.trace(jax.jacfwd(lambda x: grad_z(x, t))(z))
    if operator == "hutchinson":
        if key is None:
            raise ValueError("spatial operator 'hutchinson' needs a PRNG key")
        probes = jax.random.rademacher(key, (num_probes,) + z.shape, jnp.float32)
        return jnp.mean(jax.vmap(lambda v: jnp.dot(v, hvp(v)))(probes))
    raise ValueError(f"spatial operator must be one of {SPATIAL_OPERATORS}, got {operator!r}")


def pde_residual(u: Potential, z: jax.Array, t: jax.Array, *, equation: str = "wave", speed: jax.Array | float = 1.0,
                 operator: str = "hessian_rowsum", key: jax.Array | None = None, num_probes: int = 1) -> jax.Array:
    """The residual of `equation` at one point; zero where u solves it.

    Args:
      u: the potential, u(z: (d,), t: ()) -> ().
      z: (d,) latent.
      t: () time.
      equation: "wave" (u_tt - c^2 L[u]), "heat" (u_t - c^2 L[u]) or "hamilton_jacobi"
        (u_t + ||grad_z u||^2 / 2).
      speed: c, the learnable wave speed (its square is the diffusivity for "heat"); unused by Hamilton-Jacobi.
      operator, key, num_probes: the spatial operator L, see `spatial_operator`.

    Returns:
      (d,) for "hessian_rowsum" in the wave and heat equations, otherwise a scalar.
    """
    if equation not in EQUATIONS:
        raise ValueError(f"equation must be one of {EQUATIONS}, got {equation!r}")
    t = jnp.asarray(t, jnp.float32)
    if equation == "wave":
        time_term = time_derivatives(u, z, t)[1]
    else:
        time_term = jax.jvp(lambda s: u(z, s), (t,), (jnp.ones_like(t),))[1]
    if equation == "hamilton_jacobi":
        return time_term + 0.5 * jnp.sum(jnp.square(jax.grad(u, argnums=0)(z, t)))
    laplace = spatial_operator(u, z, t, operator=operator, key=key, num_probes=num_probes)
    return time_term - jnp.square(speed) * laplace

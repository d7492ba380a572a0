"""BEER: the Bellman-equation bound on consecutive representations' cosine similarity (He et al., ICLR 2024).

With a linear critic head Q(s, a) = w^T phi(s, a), the Bellman equation Q(s, a) = r + gamma Q(s', a') gives
(phi - gamma phi')^T w = r, hence by Cauchy-Schwarz |r| <= ||phi - gamma phi'|| ||w||, i.e.

  cos(phi, phi') <= (||phi||^2 + gamma^2 ||phi'||^2 - r^2 / ||w||^2) / (2 gamma ||phi|| ||phi'||)   (Eq. 11)

BEER adds the hinge beta * mean(relu(cos - bound)) (Eq. 12) to the critic loss: it lowers the similarity of
consecutive representations only where it exceeds the bound, with the bound and phi' stop-gradiented.

Two forms (arXiv 2404.12754; sweetice/BEER-ICLR2024 `BEER.py` @81834e5):
- "official" (the released code): the cosine and the bound's denominator use the target critic's features
  at (s', target pi(s')), the numerator uses the online critic's features at (s', pi(s')).
- "clean" (the derivation above, one feature source): phi' = the online critic's features at (s', pi(s'))
  everywhere, consistent with the online head w. `phi_next_target` is then unused.
The official code hard-codes gamma = 0.99 inside the bound and ignores the done flag; so does this default.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

FORMS = ("official", "clean")


def _norm(x: jax.Array) -> jax.Array:
    """Row L2 norm with a finite (zero) gradient at x = 0."""
    squared = jnp.sum(jnp.square(x), axis=-1)
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def beer_terms(phi, phi_next, phi_next_target, reward, head_kernel, *, gamma: float = 0.99,
               form: str = "official", eps: float = 1e-6) -> tuple[jax.Array, jax.Array]:
    """Per-transition cosine similarity and its Bellman bound.

    Args:
      phi: (B, d) online critic features at (s, a); the only input that carries gradient.
      phi_next: (B, d) online critic features at (s', pi(s')).
      phi_next_target: (B, d) target critic features at (s', target pi(s')).
      reward: (B,) rewards r(s, a).
      head_kernel: (d, 1) the online critic's last Dense kernel w.
      gamma: the discount inside the bound.
      form: "official" or "clean" (module docstring).
      eps: lower clamp on norms in the cosine and on ||w||^2.

    Returns:
      cosine: (B,) cos(phi, phi'), differentiable in phi.
      bound: (B,) the bound, stop-gradiented; +inf where ||phi|| ||phi'|| = 0 (the hinge is then inactive).
    """
    chex.assert_rank([phi, phi_next, phi_next_target, reward, head_kernel], [2, 2, 2, 1, 2])
    chex.assert_equal_shape([phi, phi_next, phi_next_target])
    chex.assert_shape(reward, phi.shape[:1])
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    phi_next, phi_next_target, reward, head_kernel = jax.lax.stop_gradient(
        (phi_next, phi_next_target, reward, head_kernel))
    numerator_next = phi_next
    cosine_next = phi_next if form == "clean" else phi_next_target

    norm_phi = _norm(phi)
    norm_next = _norm(cosine_next)
    cosine = jnp.sum(phi * cosine_next, axis=-1) / (jnp.maximum(norm_phi, eps) * jnp.maximum(norm_next, eps))

    norm_phi_sg = jax.lax.stop_gradient(norm_phi)
    head_sq = jnp.maximum(jnp.sum(jnp.square(head_kernel)), eps)
    numerator = norm_phi_sg**2 + gamma**2 * _norm(numerator_next) ** 2 - reward**2 / head_sq
    denominator = 2.0 * gamma * norm_phi_sg * norm_next
    valid = denominator > 0
    bound = jnp.where(valid, numerator / jnp.where(valid, denominator, 1.0), jnp.inf)
    return cosine, bound


def beer_loss_and_stats(phi, phi_next, phi_next_target, reward, head_kernel, *, gamma: float = 0.99,
                        coef: float = 1e-3, form: str = "official", eps: float = 1e-6
                        ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`beer_loss` plus diagnostics: the fraction of the batch where the bound is active (cos > bound),
    the mean cosine, the mean finite bound and the mean unscaled violation relu(cos - bound)."""
    cosine, bound = beer_terms(phi, phi_next, phi_next_target, reward, head_kernel, gamma=gamma, form=form, eps=eps)
    violation = jax.nn.relu(cosine - bound)
    finite = jnp.isfinite(bound)
    stats = {
        "active_fraction": jnp.mean((cosine > bound).astype(jnp.float32)),
        "cosine": jnp.mean(cosine),
        "bound": jnp.sum(jnp.where(finite, bound, 0.0)) / jnp.maximum(jnp.sum(finite), 1),
        "violation": jnp.mean(violation),
    }
    return coef * jnp.mean(violation), stats


def beer_loss_per_example(phi, phi_next, phi_next_target, reward, head_kernel, *, gamma: float = 0.99,
                          coef: float = 1e-3, form: str = "official", eps: float = 1e-6) -> jax.Array:
    """BEER's hinge per transition, (B,): coef * relu(cos(phi_b, phi'_b) - bound_b) (Eq. 12; `beer_terms`)."""
    cosine, bound = beer_terms(phi, phi_next, phi_next_target, reward, head_kernel, gamma=gamma, form=form, eps=eps)
    return coef * jax.nn.relu(cosine - bound)


def beer_loss(phi, phi_next, phi_next_target, reward, head_kernel, *, gamma: float = 0.99,
              coef: float = 1e-3, form: str = "official", eps: float = 1e-6) -> jax.Array:
    """BEER regulariser (Eq. 12): coef * mean_b relu(cos(phi_b, phi'_b) - bound_b).

    bound = (||phi||^2 + gamma^2 ||phi_next||^2 - r^2 / ||w||^2) / (2 gamma ||phi|| ||phi_next_target||) and
    cos = cos(phi, phi_next_target) in the official form; `phi_next` in both places in the clean form.
    Only `phi` carries gradient; zero norms make the hinge inactive instead of producing inf/NaN.
    Shapes: phi, phi_next, phi_next_target (B, d); reward (B,); head_kernel (d, 1). Returns a scalar.
    """
    return beer_loss_and_stats(phi, phi_next, phi_next_target, reward, head_kernel,
                               gamma=gamma, coef=coef, form=form, eps=eps)[0]

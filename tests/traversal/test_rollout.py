"""The flow z <- z + step grad u(z, t) under lax.scan, the pair it yields, strips for every potential."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.traversal import MLPPotentials, reflected_pair, rollout, traversal_pair, traverse_all


def test_rollout_of_closed_form_potentials():
    z0 = jax.random.normal(jax.random.key(0), (5, 3))
    # u = |z|^2 / 2: grad u = z, so z_i = (1 + step)^i z0.
    trajectory = jax.jit(lambda z: rollout(lambda zi, t: 0.5 * jnp.sum(zi**2), z, 4, step_size=0.5))(z0)
    assert trajectory.latents.shape == (5, 5, 3) and trajectory.velocities.shape == (4, 5, 3)
    for i in range(5):
        np.testing.assert_allclose(trajectory.latents[i], 1.5**i * z0, rtol=1e-5)
    # u = t a.z: the velocity at step i is i a, so z_T = z0 + step a T (T - 1) / 2.
    a = jnp.array([1.0, -2.0, 0.5])
    trajectory = rollout(lambda zi, t: t * jnp.dot(a, zi), z0, 4, step_size=0.1)
    np.testing.assert_allclose(trajectory.latents[-1], z0 + 0.1 * 6 * a, rtol=1e-5)
    np.testing.assert_allclose(trajectory.velocities[2], jnp.broadcast_to(2 * a, (5, 3)), rtol=1e-6)


def test_traversal_pair_with_traced_time():
    z0 = jax.random.normal(jax.random.key(1), (2, 3))
    trajectory = rollout(lambda zi, t: (1.0 + t) * jnp.sum(jnp.sin(zi)), z0, 5)
    pick = jax.jit(traversal_pair)
    for t_star in range(4):
        latent1, latent2, direction = pick(trajectory, jnp.asarray(t_star))
        np.testing.assert_allclose(latent1, trajectory.latents[t_star + 1])
        np.testing.assert_allclose(latent2, trajectory.latents[t_star + 2])
        np.testing.assert_allclose(latent2 - latent1, direction, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="t_star"):
        traversal_pair(trajectory, 4)  # latent2 would be z_6 of a 5-step rollout
    first, second = reflected_pair(z0, latent1, latent2)
    np.testing.assert_allclose(first, 2 * z0 - latent2)
    np.testing.assert_allclose(second - first, latent2 - latent1, rtol=1e-6, atol=1e-6)


def test_traverse_all_runs_every_potential():
    family = MLPPotentials(num_potentials=3, latent_dim=4)
    params = family.init(jax.random.key(2))
    z0 = jax.random.normal(jax.random.key(3), (2, 4))
    latents = jax.jit(lambda p, z: traverse_all(family, p, z, 3, step_size=2.0))(params, z0)
    assert latents.shape == (3, 4, 2, 4)
    single = jax.jit(lambda p, k: rollout(family.potential(p, k), z0, 3, step_size=2.0).latents)
    for k in range(3):
        np.testing.assert_allclose(latents[k], single(params, k), rtol=1e-5, atol=1e-6)
    assert not np.allclose(latents[0, -1], latents[1, -1])

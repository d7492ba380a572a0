"""Traversal losses: closed-form values, finite gradients through the rollout, one compile for every (k, t*)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrep.parallel import batch_sharding, make_mesh, replicated_sharding
from jaxrep.traversal import (
    MLPPotentials,
    initial_condition_loss,
    pde_residual_loss,
    potential_flow_loss,
    sequence_matching_loss,
    traversal_classifier_loss,
    variation_loss,
)

DIM, K, T = 4, 3, 5
W = jax.random.normal(jax.random.key(100), (DIM, 2 * 2 * 1))


def linear_generator(z):
    """G(z) = z W as (B, 2, 2, 1) images: J_G v = v W."""
    return (z @ W).reshape(z.shape[0], 2, 2, 1)


def test_initial_condition_loss_closed_form():
    z0 = jax.random.normal(jax.random.key(0), (3, DIM))
    a = jnp.array([1.0, 2.0, 0.0, -1.0])
    assert float(initial_condition_loss(lambda z, t: t * jnp.sum(z**2), z0)) == 0.0
    np.testing.assert_allclose(initial_condition_loss(lambda z, t: jnp.dot(a, z), z0), jnp.mean(a**2), rtol=1e-6)


def test_pde_residual_loss_is_zero_on_a_solution_and_a_mean_square_otherwise():
    latents = jax.random.normal(jax.random.key(1), (T, 3, DIM))
    direction = jnp.ones(DIM) / 2.0  # 1 / sqrt(d) for d = 4: the row-sum operator is exact along it
    wave = lambda z, t: jnp.sin(jnp.dot(direction, z) - 1.5 * t)
    loss = jax.jit(pde_residual_loss, static_argnums=0, static_argnames="operator")
    np.testing.assert_allclose(loss(wave, latents, speed=1.5), 0.0, atol=1e-9)
    # u = t^2 |z|^2 / 2: u_tt = |z|^2, H 1 = t^2 1, so r_i = |z|^2 - c^2 i^2 per dimension.
    quadratic = lambda z, t: 0.5 * t**2 * jnp.sum(z**2)
    times = jnp.arange(T, dtype=jnp.float32)[:, None, None]
    expected = jnp.mean(jnp.square(jnp.sum(latents**2, -1, keepdims=True) - 4.0 * times**2 * jnp.ones(DIM)))
    np.testing.assert_allclose(loss(quadratic, latents, speed=2.0), expected, rtol=1e-5)
    hutchinson = loss(quadratic, latents, speed=2.0, operator="hutchinson", key=jax.random.key(2))
    exact = loss(quadratic, latents, speed=2.0, operator="laplacian")
    np.testing.assert_allclose(hutchinson, exact, rtol=1e-5)  # the Hessian t^2 I is diagonal


def test_variation_loss_is_the_jacobian_vector_product():
    z = jax.random.normal(jax.random.key(3), (3, DIM))
    v = jax.random.normal(jax.random.key(4), (3, DIM))
    np.testing.assert_allclose(variation_loss(linear_generator, z, v), jnp.mean((v @ W) ** 2), rtol=1e-5)
    # Nonlinear G: the tangent of tanh(z W) is (1 - tanh^2) (v W).
    nonlinear = lambda zz: jnp.tanh(linear_generator(zz))
    expected = jnp.mean(((1 - jnp.tanh(z @ W) ** 2) * (v @ W)) ** 2)
    np.testing.assert_allclose(variation_loss(nonlinear, z, v), expected, rtol=1e-5)


def flow_objective(family, equation="wave", operator="hessian_rowsum", num_steps=T):
    def objective(params, k, t_star, z0, key):
        u, speed = family.potential(params, k), family.wave_speed(params, k)
        return potential_flow_loss(u, speed, z0, linear_generator, t_star, num_steps=num_steps, equation=equation,
                                   operator=operator, key=key)
    return objective


@pytest.mark.parametrize("equation,operator", [("wave", "hessian_rowsum"), ("heat", "hutchinson"),
                                               ("hamilton_jacobi", "laplacian")])
def test_gradient_through_the_rollout(equation, operator):
    family = MLPPotentials(num_potentials=K, latent_dim=DIM)
    params = family.init(jax.random.key(7))
    z0 = jax.random.normal(jax.random.key(8), (4, DIM))
    traces = []

    def loss_and_aux(params, k, t_star, key):
        traces.append(None)
        return flow_objective(family, equation, operator, num_steps=3)(params, k, t_star, z0, key)

    grad_fn = jax.jit(jax.value_and_grad(loss_and_aux, has_aux=True))
    for k, t_star in [(0, 0), (2, 1), (1, 1)]:
        (loss, aux), grads = grad_fn(params, jnp.asarray(k), jnp.asarray(t_star), jax.random.key(9))
        np.testing.assert_allclose(loss, aux["ic"] + aux["pde"] - aux["variation"], rtol=1e-5)
        assert aux["latent1"].shape == aux["latent2"].shape == (4, DIM)
        assert float(aux["pde"]) > 0 and float(aux["variation"]) > 0 and float(aux["velocity_norm"]) > 0
        norms = {name: float(optax.tree.norm(g)) for name, g in grads["mlp"].items()}
        assert all(np.isfinite(n) and n > 0 for n in norms.values()), norms
        # Only potential k receives gradient.
        first = grads["mlp"]["z_in"]["kernel"]
        others = [i for i in range(K) if i != k]
        assert float(jnp.abs(first[jnp.array(others)]).sum()) == 0.0
        if equation != "hamilton_jacobi":
            assert float(jnp.abs(grads["wave_speed"][k])) > 0
    # The gradient through the rollout agrees with central differences along itself.
    tangent = jax.tree.map(lambda g: g / optax.tree.norm(grads), grads)
    eps = 1e-2
    shifted = [grad_fn(jax.tree.map(lambda p, d: p + sign * eps * d, params, tangent), jnp.asarray(k),
                       jnp.asarray(t_star), jax.random.key(9))[0][0] for sign in (1.0, -1.0)]
    np.testing.assert_allclose((shifted[0] - shifted[1]) / (2 * eps), optax.tree.norm(grads), rtol=2e-2)
    assert len(traces) == 1


def test_classifier_loss_and_accuracy():
    logits = jnp.array([[10.0, -10.0, -10.0], [-10.0, 10.0, -10.0]])
    loss, accuracy = traversal_classifier_loss(logits, 1)
    assert float(accuracy) == 0.5
    np.testing.assert_allclose(loss, 0.5 * (20.0 + np.log1p(2 * np.exp(-20.0))), rtol=1e-5)
    loss, accuracy = traversal_classifier_loss(jnp.zeros((4, K)), 2)
    np.testing.assert_allclose(loss, np.log(K), rtol=1e-6)


def test_sequence_matching_loss():
    z_t, z_next = jnp.ones((2, DIM)), 3.0 * jnp.ones((2, DIM))
    assert float(sequence_matching_loss(z_t, z_next, z_t, z_next)) == 0.0
    np.testing.assert_allclose(sequence_matching_loss(z_t, z_next, 0 * z_t, z_next), 1.0 + 1.0, rtol=1e-6)


def test_batch_sharded_loss_equals_the_single_device_loss():
    family = MLPPotentials(num_potentials=K, latent_dim=DIM)
    params = family.init(jax.random.key(16))
    z0 = jax.random.normal(jax.random.key(17), (16, DIM))
    value_and_grad = jax.jit(jax.value_and_grad(
        lambda p, z: flow_objective(family, num_steps=3)(p, 1, 1, z, None)[0]))
    mesh = make_mesh()
    sharded_z0 = jax.device_put(z0, batch_sharding(mesh))
    replicated = jax.device_put(params, replicated_sharding(mesh))
    value, grads = value_and_grad(replicated, sharded_z0)
    single_value, single_grads = value_and_grad(params, jax.device_put(z0, jax.devices()[0]))
    assert len(sharded_z0.sharding.device_set) == len(jax.devices())
    np.testing.assert_allclose(value, single_value, rtol=1e-5)
    chex.assert_trees_all_close(grads, single_grads, rtol=1e-4, atol=1e-6)

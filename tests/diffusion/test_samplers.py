"""Samplers on a Gaussian data distribution whose optimal velocity is known in closed form.

For x_0 ~ N(m, S) and x_t = (1 - t) x_0 + t eps, (x_t, v = eps - x_0) are jointly Gaussian, so
E[v | x_t] = -m + (t I - (1 - t) S) Sigma_t^{-1} (x_t - (1 - t) m) with Sigma_t = (1 - t)^2 S + t^2 I.
The probability-flow ODE with this field maps N(0, I) exactly onto N(m, S); since the field is affine in x,
the numerical flow map is affine too: x_0 = A x_1 + b, so mean and covariance of the samples are b and A A^T
without any Monte-Carlo noise.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.diffusion import classifier_free_guidance, linear_path_score, ode_sample, sde_sample

MEAN = jnp.array([1.5, -0.5])
COV = jnp.array([[0.5, 0.3], [0.3, 0.4]])


def optimal_velocity(x, t):
    """E[eps - x_0 | x_t = x] for x_0 ~ N(MEAN, COV); x (B, 2), t (B,)."""
    eye = jnp.eye(2)

    def single(xi, ti):
        sigma_t = (1 - ti) ** 2 * COV + ti**2 * eye
        gain = (ti * eye - (1 - ti) * COV) @ jnp.linalg.inv(sigma_t)
        return -MEAN + gain @ (xi - (1 - ti) * MEAN)

    return jax.vmap(single)(x, t)


def flow_map_moments(num_steps, method):
    """Pushes 0, e_1, e_2 through the sampler; returns the implied mean b and covariance A A^T."""
    probes = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    out = jax.jit(lambda x: ode_sample(optimal_velocity, x, num_steps=num_steps, method=method))(probes)
    b = out[0]
    a = jnp.stack([out[1] - b, out[2] - b], axis=1)
    return b, a @ a.T


def moment_error(num_steps, method):
    b, cov = flow_map_moments(num_steps, method)
    return float(jnp.linalg.norm(b - MEAN) + jnp.linalg.norm(cov - COV))


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_ode_carries_noise_to_target_moments(method):
    b, cov = flow_map_moments(100, method)
    np.testing.assert_allclose(b, MEAN, atol=2e-2 if method == "euler" else 1e-3)
    np.testing.assert_allclose(cov, COV, atol=2e-2 if method == "euler" else 1e-3)


def test_heun_is_second_order_and_euler_first_order():
    heun_ratio = moment_error(16, "heun") / moment_error(32, "heun")
    euler_ratio = moment_error(16, "euler") / moment_error(32, "euler")
    assert 3.0 < heun_ratio < 5.0, heun_ratio
    assert 1.6 < euler_ratio < 2.4, euler_ratio


def test_sde_carries_noise_to_target_moments():
    noise = jax.random.normal(jax.random.key(0), (16384, 2))
    samples = jax.jit(lambda n, k: sde_sample(optimal_velocity, n, k, num_steps=200))(noise, jax.random.key(1))
    np.testing.assert_allclose(samples.mean(0), MEAN, atol=0.04)
    np.testing.assert_allclose(np.cov(np.asarray(samples).T), COV, atol=0.04)


def test_sde_noise_depends_on_key():
    noise = jnp.zeros((4, 2))
    a = sde_sample(optimal_velocity, noise, jax.random.key(0), num_steps=10)
    b = sde_sample(optimal_velocity, noise, jax.random.key(1), num_steps=10)
    assert not np.allclose(a, b)


def test_linear_path_score_matches_gaussian_score():
    # At time t the marginal is N((1 - t) m, Sigma_t), whose score is -Sigma_t^{-1} (x - (1 - t) m).
    t = jnp.full((3,), 0.3)
    x = jnp.array([[0.1, 0.2], [-1.0, 2.0], [3.0, 0.0]])
    sigma_t = 0.7**2 * COV + 0.09 * jnp.eye(2)
    expected = -(jnp.linalg.inv(sigma_t) @ (x - 0.7 * MEAN).T).T
    np.testing.assert_allclose(linear_path_score(x, optimal_velocity(x, t), t), expected, rtol=1e-5)


def test_classifier_free_guidance_formula_and_interval():
    def model_fn(x, t, labels):
        return x * 0 + labels[:, None].astype(jnp.float32) + t[:, None]

    labels = jnp.array([2, 3])
    guided = classifier_free_guidance(model_fn, labels, null_label=10, scale=1.5, interval=(0.0, 0.7))
    x = jnp.zeros((2, 1))
    t_in = jnp.array([0.5, 0.5])
    # v_u = 10 + t, v_c = y + t: v = v_u + 1.5 (v_c - v_u) = 10 + 1.5 (y - 10) + t.
    np.testing.assert_allclose(guided(x, t_in)[:, 0], [10 + 1.5 * (2 - 10) + 0.5, 10 + 1.5 * (3 - 10) + 0.5])
    t_mixed = jnp.array([0.5, 0.9])
    out = jax.jit(guided)(x, t_mixed)[:, 0]
    np.testing.assert_allclose(out, [10 + 1.5 * (2 - 10) + 0.5, 3 + 0.9])
    t_out = jnp.array([0.9, 0.95])
    np.testing.assert_allclose(jax.jit(guided)(x, t_out)[:, 0], [2.9, 3.95])

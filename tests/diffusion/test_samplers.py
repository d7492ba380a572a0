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

from jaxrep.diffusion import classifier_free_guidance, ode_sample, score_from_velocity, sde_sample

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
    np.testing.assert_allclose(score_from_velocity(x, optimal_velocity(x, t), t, "linear"), expected, rtol=1e-5)


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


def gaussian_velocity_np(x, t, mean, cov, path):
    """NumPy float64 E[v | x_t = x] for x_0 ~ N(mean, cov) on `path`; x (B, 2), t scalar."""
    if path == "linear":
        alpha, sigma, d_alpha, d_sigma = 1 - t, t, -1.0, 1.0
    else:
        alpha, sigma = np.cos(np.pi * t / 2), np.sin(np.pi * t / 2)
        d_alpha, d_sigma = -np.pi / 2 * sigma, np.pi / 2 * alpha
    marginal_cov = alpha**2 * cov + sigma**2 * np.eye(2)
    cross = d_alpha * alpha * cov + d_sigma * sigma * np.eye(2)  # Cov(v, x_t)
    return d_alpha * mean + (x - alpha * mean) @ np.linalg.solve(marginal_cov, cross.T)


def gaussian_velocity(mean, cov, path="linear"):
    """The same field in JAX (float32), as a VelocityFn."""
    def velocity_fn(x, t):
        def single(xi, ti):
            if path == "linear":
                alpha, sigma, d_alpha, d_sigma = 1 - ti, ti, -1.0, 1.0
            else:
                alpha, sigma = jnp.cos(jnp.pi * ti / 2), jnp.sin(jnp.pi * ti / 2)
                d_alpha, d_sigma = -jnp.pi / 2 * sigma, jnp.pi / 2 * alpha
            marginal_cov = alpha**2 * cov + sigma**2 * jnp.eye(2)
            cross = d_alpha * alpha * cov + d_sigma * sigma * jnp.eye(2)
            return d_alpha * mean + cross @ jnp.linalg.solve(marginal_cov, xi - alpha * mean)
        return jax.vmap(single)(x, t)
    return velocity_fn


COND_MEAN, UNCOND_MEAN = np.array([1.5, -0.5]), np.array([-1.0, 0.5])
UNCOND_COV = np.array([[1.0, -0.2], [-0.2, 0.8]])


def two_class_model(x, t, labels):
    """Label 0: N(COND_MEAN, COV); the null label 1: N(UNCOND_MEAN, UNCOND_COV)."""
    v_cond = gaussian_velocity(jnp.asarray(COND_MEAN), COV)(x, t)
    v_uncond = gaussian_velocity(jnp.asarray(UNCOND_MEAN), jnp.asarray(UNCOND_COV))(x, t)
    return jnp.where((labels == 1)[:, None], v_uncond, v_cond)


def repa_euler_np(x, num_steps, scale, low, high):
    """REPA's `euler_sampler` (heun=False) transcribed to NumPy float64 with the two-class model."""
    grid = np.linspace(1.0, 0.0, num_steps + 1)
    for t_cur, t_next in zip(grid[:-1], grid[1:]):
        v = gaussian_velocity_np(x, t_cur, COND_MEAN, np.asarray(COV), "linear")
        if scale > 1.0 and low <= t_cur <= high:
            v_uncond = gaussian_velocity_np(x, t_cur, UNCOND_MEAN, UNCOND_COV, "linear")
            v = v_uncond + scale * (v - v_uncond)
        x = x + (t_next - t_cur) * v
    return x


def test_euler_with_guidance_interval_matches_float64_reference():
    # 50 steps with (0, 0.7): REPA guides the step starting at t = 0.7 (step 15); a float32 grid skips it.
    noise = np.asarray(jax.random.normal(jax.random.key(0), (8, 2)), np.float64)
    expected = repa_euler_np(noise, 50, 1.8, 0.0, 0.7)
    velocity = classifier_free_guidance(two_class_model, jnp.zeros(8, jnp.int32), null_label=1, scale=1.8,
                                        interval=(0.0, 0.7))
    out = jax.jit(lambda x: ode_sample(velocity, x, num_steps=50, method="euler"))(jnp.asarray(noise, jnp.float32))
    np.testing.assert_allclose(out, expected, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("path", ["linear", "gvp"])
def test_score_from_velocity_matches_gaussian_score(path):
    # x_t = alpha x_0 + sigma eps with x_0 ~ N(m, S): p_t = N(alpha m, alpha^2 S + sigma^2 I).
    x = np.array([[0.1, 0.2], [-1.0, 2.0], [3.0, 0.0]])
    cov = np.asarray(COV)
    for t in (0.05, 0.3, 0.9):
        alpha, sigma = (1 - t, t) if path == "linear" else (np.cos(np.pi * t / 2), np.sin(np.pi * t / 2))
        expected = -np.linalg.solve(alpha**2 * cov + sigma**2 * np.eye(2), (x - alpha * COND_MEAN).T).T
        v = gaussian_velocity_np(x, t, COND_MEAN, cov, path)
        score = score_from_velocity(jnp.asarray(x, jnp.float32), jnp.asarray(v, jnp.float32),
                                    jnp.full((3,), t, jnp.float32), path)
        np.testing.assert_allclose(score, expected, rtol=1e-4, atol=1e-4)


def test_sde_on_gvp_path_carries_noise_to_target_moments():
    noise = jax.random.normal(jax.random.key(0), (16384, 2))
    field = gaussian_velocity(jnp.asarray(COND_MEAN), COV, "gvp")
    samples = jax.jit(lambda n, k: sde_sample(field, n, k, num_steps=200, path="gvp"))(noise, jax.random.key(1))
    np.testing.assert_allclose(samples.mean(0), COND_MEAN, atol=0.04)
    np.testing.assert_allclose(np.cov(np.asarray(samples).T), COV, atol=0.04)

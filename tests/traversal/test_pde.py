"""PDE residuals vanish on closed-form solutions and not elsewhere.

Wave: d'Alembert's u = f(a.z - c t) + g(a.z + c t) with |a| = 1 solves u_tt = c^2 Laplacian(u); the official
Hessian row-sum operator H 1 agrees with the Laplacian only along a = 1 / sqrt(d). Heat: the Gaussian kernel
(4 pi k tau)^(-d/2) exp(-|z|^2 / (4 k tau)), tau = t + t0, solves u_t = k Laplacian(u). Hamilton-Jacobi:
u = |z|^2 / (2 tau) and u = a.z - |a|^2 t / 2 solve u_t + |grad u|^2 / 2 = 0.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.traversal import pde_residual, spatial_operator, time_derivatives

DIM = 4
SPEED = 1.7


def points(key, count=6, dim=DIM):
    z_key, t_key = jax.random.split(key)
    return jax.random.normal(z_key, (count, dim)), jax.random.uniform(t_key, (count,), minval=0.0, maxval=3.0)


def residuals(u, z, t, **options):
    return jax.jit(jax.vmap(lambda zi, ti: pde_residual(u, zi, ti, **options)))(z, t)


def travelling_wave(direction, speed):
    def u(z, t):
        s = jnp.dot(direction, z)
        return jnp.sin(s - speed * t) + jnp.exp(-jnp.square(s + speed * t))
    return u


def unit(v):
    return v / jnp.linalg.norm(v)


def test_time_derivatives_are_exact():
    u = lambda z, t: t**3 * z[0] + jnp.sin(t) * z[1]
    z, t = jnp.array([0.7, -1.3]), jnp.asarray(1.1)
    u_t, u_tt = time_derivatives(u, z, t)
    np.testing.assert_allclose(u_t, 3 * 1.1**2 * 0.7 + np.cos(1.1) * -1.3, rtol=1e-5)
    np.testing.assert_allclose(u_tt, 6 * 1.1 * 0.7 - np.sin(1.1) * -1.3, rtol=1e-5)


def test_wave_travelling_solution_laplacian():
    z, t = points(jax.random.key(0))
    direction = unit(jax.random.normal(jax.random.key(1), (DIM,)))
    u = travelling_wave(direction, SPEED)
    r = residuals(u, z, t, equation="wave", speed=SPEED, operator="laplacian")
    assert r.shape == (6,)
    np.testing.assert_allclose(r, 0.0, atol=5e-5)
    wrong_speed = residuals(u, z, t, equation="wave", speed=1.2, operator="laplacian")
    assert np.abs(wrong_speed).max() > 0.1


def test_wave_travelling_solution_hessian_rowsum():
    z, t = points(jax.random.key(2))
    diagonal = travelling_wave(jnp.ones(DIM) / jnp.sqrt(DIM), SPEED)
    r = residuals(diagonal, z, t, equation="wave", speed=SPEED, operator="hessian_rowsum")
    assert r.shape == (6, DIM)
    np.testing.assert_allclose(r, 0.0, atol=5e-5)

    # Off the diagonal the row sum is not the Laplacian: H 1 = f'' a (1.a), so r = c^2 f'' (1 - a (1.a)).
    direction = unit(jnp.arange(1.0, DIM + 1.0))
    f = lambda s: jnp.sin(s)
    u = lambda zi, ti: f(jnp.dot(direction, zi) - SPEED * ti)
    r = residuals(u, z, t, equation="wave", speed=SPEED, operator="hessian_rowsum")
    f_second = -jnp.sin(z @ direction - SPEED * t)
    expected = SPEED**2 * f_second[:, None] * (1.0 - direction[None] * jnp.sum(direction))
    np.testing.assert_allclose(r, expected, atol=5e-5)
    assert np.abs(expected).max() > 0.1


def test_hutchinson_is_exact_for_diagonal_hessians():
    z, t = points(jax.random.key(3))
    u = travelling_wave(jnp.eye(DIM)[2], SPEED)  # axis-aligned: H is diagonal, v^T H v = tr H for v in {-1, 1}^d
    r = jax.jit(jax.vmap(lambda zi, ti, k: pde_residual(u, zi, ti, speed=SPEED, operator="hutchinson", key=k)))(
        z, t, jax.random.split(jax.random.key(4), 6))
    np.testing.assert_allclose(r, 0.0, atol=5e-5)


def heat_kernel(diffusivity, t0=1.0, dim=DIM):
    def u(z, t):
        tau = t + t0
        return (4 * jnp.pi * diffusivity * tau) ** (-dim / 2) * jnp.exp(-jnp.sum(z**2) / (4 * diffusivity * tau))
    return u


def test_heat_kernel_solves_heat_equation():
    z, t = points(jax.random.key(5))
    z = 0.8 * z
    u = heat_kernel(SPEED**2)
    scale = np.abs(jax.jit(jax.vmap(lambda zi, ti: time_derivatives(u, zi, ti)[0]))(z, t)).max()
    r = residuals(u, z, t, equation="heat", speed=SPEED, operator="laplacian")
    assert scale > 1e-4
    np.testing.assert_allclose(r / scale, 0.0, atol=1e-4)
    # The wave residual of the same function is not zero: the residual tells the equations apart.
    assert np.abs(residuals(u, z, t, equation="wave", speed=SPEED, operator="laplacian")).max() > 10 * scale * 1e-4


def test_hutchinson_is_unbiased_on_the_heat_kernel():
    z, t = jnp.array([0.9, -0.4, 0.3, 1.1]), jnp.asarray(0.5)
    u = heat_kernel(1.0)
    exact, estimate, hessian = jax.jit(lambda: (
        spatial_operator(u, z, t, operator="laplacian"),
        spatial_operator(u, z, t, operator="hutchinson", key=jax.random.key(6), num_probes=20000),
        jax.hessian(u)(z, t)))()
    np.testing.assert_allclose(exact, jnp.trace(hessian), rtol=1e-5)
    # Rademacher variance: 2 sum_{i != j} H_ij^2 per probe.
    std = np.sqrt(2 * (np.sum(np.square(hessian)) - np.sum(np.square(np.diag(hessian)))) / 20000)
    assert abs(float(estimate - exact)) < 4 * std + 1e-7


def test_separable_heat_solution_with_hutchinson():
    omegas = jnp.array([0.5, 1.0, 1.5, 2.0])
    u = lambda z, t: jnp.sum(jnp.exp(-(SPEED**2) * omegas**2 * t) * jnp.sin(omegas * z + 0.3))
    z, t = points(jax.random.key(7))
    r = jax.jit(jax.vmap(lambda zi, ti, k: pde_residual(u, zi, ti, equation="heat", speed=SPEED,
                                                        operator="hutchinson", key=k, num_probes=2)))(
        z, t, jax.random.split(jax.random.key(8), 6))
    np.testing.assert_allclose(r, 0.0, atol=5e-5)


def test_hamilton_jacobi_closed_forms():
    z, t = points(jax.random.key(9))
    quadratic = lambda zi, ti: jnp.sum(zi**2) / (2 * (ti + 0.5))
    a = jnp.array([0.3, -1.2, 0.8, 0.5])
    plane = lambda zi, ti: jnp.dot(a, zi) - 0.5 * jnp.sum(a**2) * ti + 2.0
    np.testing.assert_allclose(residuals(quadratic, z, t, equation="hamilton_jacobi"), 0.0, atol=1e-5)
    np.testing.assert_allclose(residuals(plane, z, t, equation="hamilton_jacobi"), 0.0, atol=1e-5)
    static = lambda zi, ti: 0.5 * jnp.sum(zi**2)
    np.testing.assert_allclose(residuals(static, z, t, equation="hamilton_jacobi"), 0.5 * jnp.sum(z**2, -1), rtol=1e-5)


def test_operators_coincide_in_one_dimension():
    u = lambda z, t: jnp.sin(2.0 * z[0]) * jnp.cos(t) + z[0] ** 3
    z, t = jnp.array([0.4]), jnp.asarray(0.2)
    values = jax.jit(lambda: [spatial_operator(u, z, t, operator=op, key=jax.random.key(0))
                              for op in ("hessian_rowsum", "laplacian", "hutchinson")])()
    expected = -4 * np.sin(0.8) * np.cos(0.2) + 6 * 0.4
    for value in values:
        np.testing.assert_allclose(np.ravel(value), [expected], rtol=1e-5)


def test_bad_options_raise():
    u = lambda z, t: jnp.sum(z) * t
    z, t = jnp.ones(2), jnp.asarray(1.0)
    with pytest.raises(ValueError, match="equation"):
        pde_residual(u, z, t, equation="schrodinger")
    with pytest.raises(ValueError, match="spatial operator"):
        pde_residual(u, z, t, operator="trace")
    with pytest.raises(ValueError, match="PRNG key"):
        pde_residual(u, z, t, operator="hutchinson")

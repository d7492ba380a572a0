"""Stacked potentials: the traced index picks the right parameters, one compilation serves every k."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.traversal import LinearDirections, MLPPotentials, PotentialMLP, sinusoidal_embedding, velocity

K, DIM = 3, 6


def test_init_stacks_parameters_and_wave_speeds():
    family = MLPPotentials(num_potentials=K, latent_dim=DIM)
    params = family.init(jax.random.key(0))
    for leaf in jax.tree.leaves(params["mlp"]):
        assert leaf.shape[0] == K
    np.testing.assert_array_equal(params["wave_speed"], np.ones(K))
    kernels = params["mlp"]["z_in"]["kernel"]
    assert kernels.shape == (K, DIM, DIM)
    assert not np.allclose(kernels[0], kernels[1])  # independent initialisations
    # PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    assert np.abs(kernels).max() <= 1 / np.sqrt(DIM)


def test_traced_index_selects_its_parameters_without_recompiling():
    family = MLPPotentials(num_potentials=K, latent_dim=DIM)
    params = family.init(jax.random.key(1))
    traces = []

    @jax.jit
    def value_and_speed(params, k, z, t):
        traces.append(None)
        return family.potential(params, k)(z, t), family.wave_speed(params, k)

    params["wave_speed"] = jnp.arange(1.0, K + 1.0)
    z, t = jax.random.normal(jax.random.key(2), (DIM,)), jnp.asarray(2.0)
    module = PotentialMLP(width=DIM)
    values = []
    for k in range(K):
        own = jax.tree.map(lambda leaf: np.asarray(leaf)[k], params["mlp"])
        value, speed = value_and_speed(params, jnp.asarray(k), z, t)
        np.testing.assert_allclose(value, module.apply({"params": own}, z, t), rtol=1e-6)
        assert float(speed) == k + 1.0
        values.append(float(value))
    assert len(traces) == 1
    assert len(set(values)) == K


def test_potential_is_bounded_and_depends_on_time():
    family = MLPPotentials(num_potentials=1, latent_dim=DIM)
    params = family.init(jax.random.key(3))
    u = family.potential(params, 0)
    z = 10.0 * jax.random.normal(jax.random.key(4), (DIM,))
    assert abs(float(u(z, jnp.asarray(0.0)))) < 1.0
    assert float(u(z, jnp.asarray(0.0))) != float(u(z, jnp.asarray(1.0)))
    unbounded = MLPPotentials(num_potentials=1, latent_dim=DIM, output_tanh=False)
    assert unbounded.module.output_tanh is False


def test_sinusoidal_embedding_matches_the_transformer_formula():
    t, dim = 3.0, 8
    half = dim // 2
    frequencies = np.exp(-np.arange(half) * np.log(10000.0) / (half - 1))
    expected = np.concatenate([np.sin(t * frequencies), np.cos(t * frequencies)])
    np.testing.assert_allclose(sinusoidal_embedding(jnp.asarray(t), dim), expected, rtol=1e-6)
    odd = sinusoidal_embedding(jnp.asarray(t), 5)  # the even embedding of 4 dims and one zero
    assert odd.shape == (5,) and float(odd[-1]) == 0.0
    assert np.all(np.isfinite(sinusoidal_embedding(jnp.asarray(t), 2)))


def test_odd_latent_size_builds_a_full_width_time_layer():
    # The official MLP's time layer is nn.Linear(d, d); an odd d used to give a (d - 1, d) kernel silently.
    family = MLPPotentials(num_potentials=K, latent_dim=5)
    params = family.init(jax.random.key(7))
    for name in ("z_in", "t_in", "t_out", "fuse"):
        assert params["mlp"][name]["kernel"].shape == (K, 5, 5), name
    u = family.potential(params, 0)
    z = jax.random.normal(jax.random.key(8), (5,))
    assert np.isfinite(float(u(z, jnp.asarray(1.0))))


def test_linear_directions_have_unit_constant_velocity():
    family = LinearDirections(num_potentials=K, latent_dim=DIM)
    params = family.init(jax.random.key(5))
    z = jax.random.normal(jax.random.key(6), (4, DIM))
    for k in range(K):
        v = velocity(family.potential(params, jnp.asarray(k)), z, 3.0)
        expected = params["directions"][k] / jnp.linalg.norm(params["directions"][k])
        np.testing.assert_allclose(v, jnp.broadcast_to(expected, v.shape), rtol=1e-6)
    assert float(family.wave_speed(params, 0)) == 1.0

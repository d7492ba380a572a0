"""jaxrep.rl.networks: shapes, ranges, features, PyTorch-style init."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.rl.networks import Actor, Critic, critic_head_kernel


def test_actor_is_tanh_bounded_and_batched():
    actor = Actor(action_size=3)
    params = actor.init(jax.random.PRNGKey(0), jnp.zeros((1, 7)))
    observation = 100.0 * jax.random.normal(jax.random.PRNGKey(1), (5, 7))
    action = actor.apply(params, observation)
    assert action.shape == (5, 3) and np.all(np.abs(action) <= 1.0)
    assert actor.apply(params, observation[0]).shape == (3,)


def test_critic_returns_q_and_penultimate_features():
    critic = Critic(hidden_sizes=(64, 48))
    observation, action = jnp.ones((4, 7)), jnp.ones((4, 2))
    variables = critic.init(jax.random.PRNGKey(0), observation, action)
    q, phi = critic.apply(variables, observation, action, return_features=True)
    assert q.shape == (4,) and phi.shape == (4, 48) and np.all(phi >= 0)  # post-ReLU
    head = critic_head_kernel(variables["params"])
    assert head.shape == (48, 1)
    np.testing.assert_allclose(q, phi @ head[:, 0] + variables["params"]["head"]["bias"][0], rtol=1e-5)
    np.testing.assert_array_equal(critic.apply(variables, observation, action), q)


def test_torch_init_is_uniform_in_inverse_sqrt_fan_in():
    variables = Critic().init(jax.random.PRNGKey(0), jnp.zeros((1, 17)), jnp.zeros((1, 6)))["params"]
    for name, fan_in in (("hidden_0", 23), ("hidden_1", 256), ("head", 256)):
        bound = 1 / np.sqrt(fan_in)
        for leaf in (variables[name]["kernel"], variables[name]["bias"]):
            assert np.all(np.abs(leaf) <= bound)
            if leaf.size > 100:  # spread over the whole interval, not a normal init
                assert np.abs(leaf).max() > 0.9 * bound
    flax_init = Critic(init_scheme="flax").init(jax.random.PRNGKey(0), jnp.zeros((1, 17)), jnp.zeros((1, 6)))
    np.testing.assert_array_equal(flax_init["params"]["hidden_0"]["bias"], 0.0)
    with pytest.raises(ValueError, match="init"):
        Critic(init_scheme="xavier").init(jax.random.PRNGKey(0), jnp.zeros((1, 17)), jnp.zeros((1, 6)))

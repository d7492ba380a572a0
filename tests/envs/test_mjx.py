"""envs/mjx.py: Playground names, flattened observations, action scaling, time limits with auto-reset, checkpoints."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.extras import import_extra

import_extra("mujoco_playground", "playground")

from envs.mjx import MJXEnv, playground_name, task_names  # noqa: E402
from jaxrep.run.checkpoint import Checkpointer, abstract_like, with_empty, without_empty  # noqa: E402

NUM_ENVS, ACTION_REPEAT, EPISODE_LENGTH = 2, 2, 6  # 3 agent steps per episode


def test_names():
    assert playground_name("cartpole-balance") == "CartpoleBalance"
    assert playground_name("finger-turn_hard") == "FingerTurnHard"
    assert playground_name("ball_in_cup-catch") == "BallInCup"
    assert playground_name("CheetahRun") == "CheetahRun"
    assert "WalkerWalk" in task_names()
    with pytest.raises(ValueError, match="CheetahRun"):
        playground_name("cheetah-runn")


@pytest.fixture(scope="module")
def cartpole():
    env = MJXEnv("cartpole-balance", NUM_ENVS, action_repeat=ACTION_REPEAT, episode_length=EPISODE_LENGTH)
    return env, jax.jit(env.reset), jax.jit(env.step)


def test_episode_time_limit_and_auto_reset(cartpole):
    env, reset, step = cartpole
    assert (env.observation_size, env.action_size, env.steps_per_episode) == (5, 1, 3)
    state, observation = reset(jax.random.PRNGKey(0))
    assert observation.shape == (NUM_ENVS, 5) and observation.dtype == jnp.float32
    assert not np.array_equal(observation[0], observation[1])  # each env has its own start
    action = jnp.full((NUM_ENVS, 1), 0.5)
    results = []
    for _ in range(env.steps_per_episode):
        state, result = step(state, action)
        results.append(jax.device_get(result))
    assert [bool(r.truncated.all()) for r in results] == [False, False, True]
    assert not any(r.terminated.any() for r in results)
    first, last = results[0], results[-1]
    np.testing.assert_array_equal(first.observation, first.next_observation)  # no reset mid-episode
    # At the time limit: the real next observation goes to the buffer, the agent continues from a reset.
    assert not np.allclose(last.observation, last.next_observation)
    np.testing.assert_array_equal(np.asarray(state.episode), [1, 1])
    np.testing.assert_array_equal(np.asarray(state.episode_step), [0, 0])
    total = sum(r.reward for r in results)
    np.testing.assert_allclose(last.episode_return, total, rtol=1e-6)
    assert np.all(total > 0) and np.all(total <= env.steps_per_episode * ACTION_REPEAT)  # rewards in [0, 1]
    # Episode 1 starts from another state than episode 0 (resets are keyed by the episode index).
    assert not np.allclose(last.observation, np.asarray(observation))


def test_actions_are_clipped_to_the_unit_box(cartpole):
    env, reset, step = cartpole
    state, _ = reset(jax.random.PRNGKey(1))
    _, clipped = step(state, jnp.full((NUM_ENVS, 1), 5.0))
    _, unit = step(state, jnp.full((NUM_ENVS, 1), 1.0))
    _, opposite = step(state, jnp.full((NUM_ENVS, 1), -1.0))
    np.testing.assert_array_equal(clipped.next_observation, unit.next_observation)
    assert not np.allclose(unit.next_observation, opposite.next_observation)


def test_env_state_checkpoints_bitwise(cartpole, tmp_path):
    env, reset, step = cartpole
    state, _ = reset(jax.random.PRNGKey(2))
    state, _ = step(state, jnp.zeros((NUM_ENVS, 1)))
    checkpointer = Checkpointer(tmp_path, save_every=1)
    assert any(leaf.size == 0 for leaf in jax.tree.leaves(state))  # what `without_empty` is for
    checkpointer.save(1, without_empty(state))
    checkpointer.close()
    restored, _ = Checkpointer(tmp_path, save_every=1).restore(abstract_like(without_empty(state)))
    restored = with_empty(restored, like=state)
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    chex.assert_trees_all_equal(restored, state)
    assert jax.tree.leaves(jax.tree.map(lambda a, b: a.dtype == b.dtype and a.shape == b.shape, restored, state)) \
        == [True] * len(jax.tree.leaves(state))

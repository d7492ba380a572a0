"""envs.dmc: names, flattening order, action scaling, episode length, truncation, seeding, no rendering."""

import jax
import numpy as np
import pytest
from dm_control import suite

from envs.dmc import DMCEnv, parse_task_name, seed_from_key, task_names


def test_task_names_round_trip():
    assert parse_task_name("cheetah-run") == ("cheetah", "run")
    assert parse_task_name("ball_in_cup-catch") == ("ball_in_cup", "catch")
    assert parse_task_name("finger-turn_hard") == ("finger", "turn_hard")
    assert len(task_names()) == len(suite.ALL_TASKS)


@pytest.mark.parametrize("name, hint", [("cheetah_run", "did you mean 'cheetah-run'"),
                                        ("nothing-here", "expected 'domain-task'")])
def test_unknown_task_fails_clearly(name, hint):
    with pytest.raises(ValueError, match=hint) as info:
        DMCEnv(name)
    assert "\n" not in str(info.value)


def test_observation_is_spec_order_flattening_and_float32():
    env = DMCEnv("reacher-easy", seed=3)
    raw = suite.load("reacher", "easy", task_kwargs={"random": 3})
    observation, timestep = env.reset(seed=3), raw.reset()
    assert env.observation_keys == tuple(raw.observation_spec().keys()) == ("position", "to_target", "velocity")
    expected = np.concatenate([np.asarray(v, np.float32).ravel() for v in timestep.observation.values()])
    assert observation.dtype == np.float32 and observation.shape == (env.observation_size,) == (6,)
    np.testing.assert_array_equal(observation, expected)
    action = np.array([0.3, -0.7], np.float32)
    np.testing.assert_array_equal(
        env.step(action).observation,
        np.concatenate([np.asarray(v, np.float32).ravel() for v in raw.step(action).observation.values()]))


def test_actions_map_from_unit_box_to_task_bounds():
    env = DMCEnv("quadruped-walk")  # bounds differ per actuator: [-1, 1], [-1, 1.1], [-0.8, 0.8]
    env.reset(seed=0)
    spec = env._env.action_spec()
    env.step(np.ones(env.action_size))
    np.testing.assert_allclose(env.physics.data.ctrl, spec.maximum)
    env.step(-np.ones(env.action_size))
    np.testing.assert_allclose(env.physics.data.ctrl, spec.minimum)
    env.step(np.zeros(env.action_size))
    np.testing.assert_allclose(env.physics.data.ctrl, (spec.minimum + spec.maximum) / 2)
    env.step(5 * np.ones(env.action_size))  # out of range: clipped to the box
    np.testing.assert_allclose(env.physics.data.ctrl, spec.maximum)


@pytest.mark.parametrize("action_repeat, agent_steps", [(1, 1000), (4, 250), (3, 334)])
def test_episode_length_and_truncation_is_not_termination(action_repeat, agent_steps):
    env = DMCEnv("cheetah-run", action_repeat=action_repeat)
    env.reset(seed=0)
    assert env.max_episode_steps == agent_steps
    for t in range(agent_steps):
        step = env.step(np.zeros(env.action_size))
        assert not step.terminated
        assert step.truncated == (t == agent_steps - 1)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(env.action_size))


def test_observation_at_the_time_limit_is_the_real_next_state():
    env = DMCEnv("pendulum-swingup", episode_length=50)
    raw = suite.load("pendulum", "swingup", task_kwargs={"random": 7})
    env.reset(seed=7), raw.reset()
    actions = np.random.default_rng(0).uniform(-1, 1, (50, 1))
    for action in actions:
        step, timestep = env.step(action), raw.step(action)
    assert step.truncated and not step.terminated
    real = np.concatenate([np.asarray(v, np.float32).ravel() for v in timestep.observation.values()])
    np.testing.assert_array_equal(step.observation, real)  # not a reset observation
    assert not np.array_equal(step.observation, env.reset(seed=7))


def test_action_repeat_sums_rewards():
    env = DMCEnv("cartpole-swingup", action_repeat=3)
    raw = suite.load("cartpole", "swingup", task_kwargs={"random": 1})
    env.reset(seed=1), raw.reset()
    action = np.array([0.5])
    expected = sum(raw.step(action).reward for _ in range(3))
    assert env.step(action).reward == pytest.approx(expected, rel=1e-12)


def test_episodes_are_pure_functions_of_the_seed():
    env = DMCEnv("reacher-easy")
    first = env.reset(seed=11)
    rollout = [env.step(np.array([0.2, -0.1])).observation for _ in range(5)]
    env.reset(seed=12)
    np.testing.assert_array_equal(env.reset(seed=11), first)
    np.testing.assert_array_equal([env.step(np.array([0.2, -0.1])).observation for _ in range(5)], rollout)
    assert not np.array_equal(DMCEnv("reacher-easy").reset(seed=12), first)


def test_seed_from_key_is_deterministic_and_distinct():
    key = jax.random.PRNGKey(0)
    assert seed_from_key(key, 3) == seed_from_key(key, 3)
    seeds = {seed_from_key(key, i) for i in range(20)}
    assert len(seeds) == 20 and all(0 <= s < 2**31 for s in seeds)


def test_no_rendering_unless_asked():
    env = DMCEnv("cheetah-run")
    with pytest.raises(RuntimeError, match="render=True"):
        env.render()
    with pytest.raises(RuntimeError, match="MUJOCO_GL"):  # tests run with MUJOCO_GL=disable
        DMCEnv("cheetah-run", render=True)

"""jaxrep.rl.fused: counters, buffer fill and transition alignment after N chunks; bitwise resume after a chunk.

Uses a tiny pure-JAX env with the `envs.mjx.MJXEnv` interface (so it runs without MuJoCo Playground and
compiles in seconds); the MJX env itself is tested in tests/envs/test_mjx.py and tests/rl/test_train_rl_mjx.py.
"""

import functools

import chex
import jax
import numpy as np
import pytest

from jaxrep.rl.ddpg import DDPG
from jaxrep.rl.fused import FusedDDPG
from jaxrep.rl.networks import Actor, Critic
from jaxrep.run.checkpoint import Checkpointer, abstract_like
from tests.rl.line_env import LineEnv
from tests.rl.line_env import run_chunks as run_line_chunks

NUM_ENVS, STEPS_PER_EPISODE, ITERATIONS, START_STEPS, UPDATES, CAPACITY = 4, 5, 5, 16, 2, 48
run_chunks = functools.partial(run_line_chunks, iterations=ITERATIONS)


@pytest.fixture(scope="module")
def fused():
    agent = DDPG(Actor(1, (16, 16)), Critic((16, 16)), start_steps=START_STEPS, batch_size=8)
    fused = FusedDDPG(agent, LineEnv(NUM_ENVS, STEPS_PER_EPISODE), updates_per_iteration=UPDATES)
    init = jax.jit(lambda key: fused.init(key, CAPACITY))
    run = jax.jit(fused.run, static_argnums=1)
    return fused, init, run


def test_counters_and_buffer_after_chunks(fused):
    _, init, run = fused
    state, summaries = run_chunks(run, init(jax.random.PRNGKey(0)), 3)
    env_steps = 3 * ITERATIONS * NUM_ENVS  # 60 > capacity 48: the ring has wrapped
    assert int(state.env_step) == env_steps and int(state.iteration) == 3 * ITERATIONS
    assert int(state.buffer.size) == CAPACITY and int(state.buffer.position) == env_steps % CAPACITY
    # Updates run in the iterations whose env-step count (after inserting) exceeds start_steps: 20, 24, ..., 60.
    updating_iterations = sum(1 for i in range(1, 3 * ITERATIONS + 1) if i * NUM_ENVS > START_STEPS)
    assert int(state.agent.step) == UPDATES * updating_iterations == 22
    assert [int(s["train/updates"]) for s in summaries] == [2, 10, 10]  # only the 5th iteration of chunk 1
    # Every env ends one 5-step episode per 5-iteration chunk; the toy env reports return -1 per episode.
    assert [int(s["train/episodes"]) for s in summaries] == [NUM_ENVS] * 3
    assert all(s["train/episode_return"] == -1.0 for s in summaries)
    # Each stored transition pairs an observation with the action taken in it and its real successor.
    data = jax.device_get(state.buffer.data)
    np.testing.assert_allclose(data.next_observation, data.observation + 0.1 * data.action, atol=1e-6)
    np.testing.assert_allclose(data.reward, -np.abs(data.next_observation[:, 0]), atol=1e-6)
    assert np.all(np.abs(data.action) <= 1.0) and np.all(data.not_done == 1.0)
    assert all(np.isfinite(s["critic/td_loss"]) for s in summaries)


def test_random_phase_leaves_the_agent_untouched(fused):
    _, init, run = fused
    state = init(jax.random.PRNGKey(1))
    early, summary = run(state, START_STEPS // NUM_ENVS)  # exactly start_steps env steps: no update yet
    assert int(early.env_step) == START_STEPS == int(early.buffer.size)
    assert int(early.agent.step) == 0 and int(summary["train/updates"]) == 0
    assert np.isnan(summary["critic/td_loss"])  # no update ran, so no update metric is reported
    chex.assert_trees_all_equal(early.agent.params, state.agent.params)


def test_resume_after_a_chunk_is_bitwise_identical(fused, tmp_path):
    _, init, run = fused
    key = jax.random.PRNGKey(2)
    uninterrupted, _ = run_chunks(run, init(key), 4)

    first, _ = run_chunks(run, init(key), 2)
    checkpointer = Checkpointer(tmp_path / "checkpoints", save_every=1)
    checkpointer.save(2, first, {"chunk": 2})
    checkpointer.close()
    restored, extra = Checkpointer(tmp_path / "checkpoints", save_every=1).restore(abstract_like(init(key)))
    assert extra == {"chunk": 2} and int(restored.env_step) == 2 * ITERATIONS * NUM_ENVS
    resumed, _ = run_chunks(run, restored, 2)

    chex.assert_trees_all_equal(resumed, uninterrupted)
    # Not vacuous: the run moved on after the checkpoint.
    assert int(resumed.agent.step) > int(first.agent.step)
    assert not np.array_equal(resumed.agent.params["critic"]["head"]["kernel"],
                              first.agent.params["critic"]["head"]["kernel"])


def test_evaluate_returns_one_episode_per_env_with_its_discounted_return_and_q_estimate(fused):
    fused_ddpg, init, _ = fused
    state = init(jax.random.PRNGKey(3))
    outcome = jax.jit(fused_ddpg.evaluate)(state.agent.params, jax.random.PRNGKey(4))
    returns = np.asarray(outcome["return"])
    assert returns.shape == (NUM_ENVS,)
    # Exactly STEPS_PER_EPISODE rewards of -|x| <= 0 each: the episode's steps only, none after its end.
    assert np.all(returns <= 0) and np.all(returns >= -STEPS_PER_EPISODE * 1.5)
    # The same episodes stepped one by one here: sum_t gamma^t r_t, and the critic at the first observation.
    env, agent, params = fused_ddpg.env, fused_ddpg.agent, state.agent.params
    env_state, observation = env.reset(jax.random.PRNGKey(4))
    expected_q = np.asarray(agent.value(params, observation))
    rewards = []
    for _ in range(STEPS_PER_EPISODE):
        env_state, result = env.step(env_state, agent.policy(params["actor"], observation))
        observation = result.observation
        rewards.append(np.asarray(result.reward))
    discounts = agent.discount ** np.arange(STEPS_PER_EPISODE)
    np.testing.assert_allclose(outcome["mc_return"], (discounts[:, None] * np.stack(rewards)).sum(0), rtol=1e-5)
    np.testing.assert_allclose(returns, np.stack(rewards).sum(0), rtol=1e-5)
    np.testing.assert_allclose(outcome["q_estimate"], expected_q, rtol=1e-5)

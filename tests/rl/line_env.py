"""A tiny pure-JAX env with the `envs.mjx.MJXEnv` interface, for the fused-loop tests (compiles in seconds)."""

from typing import NamedTuple

import jax
import jax.numpy as jnp


class LineState(NamedTuple):
    position: jax.Array  # (N,)
    episode_step: jax.Array  # (N,)
    episode: jax.Array  # (N,)
    key: jax.Array


class LineStep(NamedTuple):
    observation: jax.Array
    next_observation: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    episode_return: jax.Array


class LineEnv:
    """x <- x + 0.1 a, reward -|x|, episodes of `steps_per_episode` steps from x ~ U(-1, 1) keyed by episode."""

    observation_size, action_size = 1, 1

    def __init__(self, num_envs: int, steps_per_episode: int):
        self.num_envs, self.steps_per_episode = num_envs, steps_per_episode

    def _start(self, key, episode):
        keys = jax.vmap(lambda i, e: jax.random.fold_in(jax.random.fold_in(key, i), e))(
            jnp.arange(self.num_envs), episode)
        return jax.vmap(lambda k: jax.random.uniform(k, (), minval=-1.0, maxval=1.0))(keys)

    def reset(self, key):
        zeros = jnp.zeros(self.num_envs, jnp.int32)
        position = self._start(key, zeros)
        return LineState(position, zeros, zeros, key), position[:, None]

    def step(self, state, action):
        position = state.position + 0.1 * action[:, 0]
        reward = -jnp.abs(position)
        episode_step = state.episode_step + 1
        truncated = episode_step >= self.steps_per_episode
        episode = state.episode + truncated
        restarted = jnp.where(truncated, self._start(state.key, episode), position)
        new_state = LineState(restarted, jnp.where(truncated, 0, episode_step), episode, state.key)
        return new_state, LineStep(restarted[:, None], position[:, None], reward, jnp.zeros_like(truncated),
                                   truncated, jnp.where(truncated, -1.0, 0.0))


def run_chunks(run, state, chunks: int, iterations: int):
    """(state, host summaries) after `chunks` calls of a jitted `run(state, iterations)` (a fused loop's chunk)."""
    summaries = []
    for _ in range(chunks):
        state, summary = run(state, iterations)
        summaries.append(jax.device_get(summary))
    return state, summaries

"""BEER-DDPG with the whole loop on the device: vectorised env step, replay insert and updates in one `lax.scan`.

The purejaxrl layout: the run is a pure function of a carry (`FusedState`), advanced by `FusedDDPG.run`, a
`lax.scan` over `num_iterations` loop iterations that the caller jits once and calls chunk after chunk,
checkpointing the carry in between (it holds everything: train state, replay buffer, env states, counters,
keys; nothing random is carried apart from root keys). One iteration:

  1. act: `DDPG.act` for each of the N envs (uniform actions while `env_step < start_steps`, then the actor
     plus Gaussian noise), keyed by `fold_in(explore_key, iteration)` split N ways;
  2. env: one vectorised agent step (auto-reset, real next observation kept for the buffer);
  3. insert the N transitions into the ring buffer (`replay.add`);
  4. once `env_step > start_steps`, `updates_per_iteration` updates (`DDPG.train`, batches sampled on the
     device), under a `lax.cond` so the random phase pays nothing for them.

The update-to-data ratio is `updates_per_iteration / N`. The env is anything with the `envs.mjx.MJXEnv`
interface: `num_envs`, `observation_size`, `action_size`, `steps_per_episode`, pure `reset(key) -> (env_state,
obs)` and `step(env_state, action) -> (env_state, StepResult)`.

Checkpoints: MJX data holds zero-size arrays (no contacts, no activations), which orbax refuses to save;
save `jaxrep.run.checkpoint.without_empty(state)` and rebuild with `with_empty(restored, like=state)`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from jaxrep.rl import replay
from jaxrep.rl.ddpg import DDPG
from jaxrep.train_state import TrainState


class FusedState(flax.struct.PyTreeNode):
    """The carry of the fused loop: everything a run needs to continue identically.

    Attributes:
      agent: the DDPG train state (params, targets, Adam states, update counter, sampling key).
      buffer: the replay buffer.
      env: the vectorised env state.
      observation: (N, obs_size) the observations the next iteration acts on.
      env_step: int32 scalar, agent steps taken so far summed over the N envs.
      iteration: int32 scalar, loop iterations so far (env_step = N * iteration).
      explore_key: root key of the exploration noise.
    """

    agent: TrainState
    buffer: replay.ReplayBuffer
    env: Any
    observation: jax.Array
    env_step: jax.Array
    iteration: jax.Array
    explore_key: jax.Array


@dataclasses.dataclass(frozen=True)
class FusedDDPG:
    """DDPG/BEER-DDPG (`agent`) on a vectorised env (`env`), `updates_per_iteration` updates per env step."""

    agent: DDPG
    env: Any
    updates_per_iteration: int

    def init(self, key: jax.Array, replay_capacity: int) -> FusedState:
        """Fresh carry: parameters, an empty buffer, every env at the start of episode 0."""
        params_key, env_key, explore_key = jax.random.split(key, 3)
        env_state, observation = self.env.reset(env_key)
        return FusedState(
            agent=self.agent.init(params_key, self.env.observation_size, self.env.action_size),
            buffer=replay.init_replay(replay_capacity, self.env.observation_size, self.env.action_size),
            env=env_state,
            observation=observation,
            env_step=jnp.zeros((), jnp.int32),
            iteration=jnp.zeros((), jnp.int32),
            explore_key=explore_key,
        )

    def learning(self, env_step: jax.Array) -> jax.Array:
        """Whether an iteration that has reached `env_step` updates: past the uniform-random phase."""
        return env_step > self.agent.start_steps

    def train_or_skip(self, agent_state: TrainState, buffer: replay.ReplayBuffer, updated: jax.Array,
                      train=None):
        """`updates_per_iteration` updates if `updated`, else none (metrics zero), under `lax.cond`; `train`
        (agent_state, buffer) -> (agent_state, metrics) replaces `DDPG.train` (a population's vmapped one)."""
        train = train or (lambda state, data: self.agent.train(state, data, self.updates_per_iteration))
        shapes = jax.eval_shape(train, agent_state, buffer)[1]
        skip = lambda state, _: (state, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes))
        return jax.lax.cond(updated, train, skip, agent_state, buffer)

    def collect(self, state: FusedState) -> tuple[FusedState, dict[str, jax.Array]]:
        """Steps 1-3 of an iteration (act, env step, insert); the agent is left as it is."""
        num_envs = self.env.num_envs
        keys = jax.random.split(jax.random.fold_in(state.explore_key, state.iteration), num_envs)
        action = jax.vmap(self.agent.act, in_axes=(None, 0, 0, None))(
            state.agent.params["actor"], state.observation, keys, state.env_step)
        env_state, step = self.env.step(state.env, action)
        buffer = replay.add(state.buffer, replay.Transitions(
            observation=state.observation, action=action, reward=step.reward,
            not_done=1.0 - step.terminated.astype(jnp.float32), next_observation=step.next_observation))
        info = {"episodes": jnp.sum(step.terminated | step.truncated), "return_sum": jnp.sum(step.episode_return),
                "reward": jnp.mean(step.reward)}
        return state.replace(buffer=buffer, env=env_state, observation=step.observation,
                             env_step=state.env_step + num_envs, iteration=state.iteration + 1), info

    def iteration(self, state: FusedState) -> tuple[FusedState, dict[str, jax.Array]]:
        """One loop iteration (act, env step, insert, update); returns per-iteration scalars."""
        state, info = self.collect(state)
        if self.updates_per_iteration > 0:
            updated = self.learning(state.env_step)
            agent_state, metrics = self.train_or_skip(state.agent, state.buffer, updated)
            state = state.replace(agent=agent_state)
            info.update(metrics, updated=updated)
        return state, info

    def summarize(self, info: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """A chunk's summary from its iterations' stacked scalars (leading iteration axis); see `run`."""
        info = dict(info)
        episodes = jnp.sum(info.pop("episodes"))
        summary = {"train/episodes": episodes,
                   "train/episode_return": jnp.sum(info.pop("return_sum")) / jnp.where(episodes > 0, episodes, jnp.nan),
                   "train/reward": jnp.mean(info.pop("reward"))}
        if "updated" in info:
            updated = info.pop("updated").astype(jnp.float32)
            count = jnp.sum(updated)
            summary["train/updates"] = (count * self.updates_per_iteration).astype(jnp.int32)
            for name, values in info.items():
                summary[name] = jnp.sum(values * updated) / jnp.where(count > 0, count, jnp.nan)
        return summary

    def run(self, state: FusedState, num_iterations: int) -> tuple[FusedState, dict[str, jax.Array]]:
        """`num_iterations` iterations under one `lax.scan` (jit it with `num_iterations` static).

        Returns the new carry and the chunk's summary: `train/episodes` finished, `train/episode_return`
        (their mean; NaN if none finished), `train/reward` (mean per agent step), `train/updates` run, and
        the update metrics averaged over the iterations that updated (NaN if none did).
        """
        state, info = jax.lax.scan(lambda s, _: self.iteration(s), state, length=num_iterations)
        return state, self.summarize(info)

    def evaluate(self, params, key: jax.Array) -> dict[str, jax.Array]:
        """One deterministic-policy episode per env, from resets keyed by `key`; each entry (N,):
        "return" (undiscounted), "mc_return" (sum_t gamma^t r_t, the Monte-Carlo return the critic estimates)
        and "q_estimate" (the critic's Q(s_0, pi(s_0)) at the episode's start: BEER's Q-estimation error is
        q_estimate - mc_return). `params`: the agent's {"actor", "critic"}."""
        env_state, observation = self.env.reset(key)
        q_estimate = self.agent.value(params, observation)

        def step(carry, _):
            env_state, observation, returns, discounted, weight, running = carry
            env_state, result = self.env.step(env_state, self.agent.policy(params["actor"], observation))
            reward = jnp.where(running, result.reward, 0.0)
            running = running & ~(result.terminated | result.truncated)
            return (env_state, result.observation, returns + reward, discounted + weight * reward,
                    weight * self.agent.discount, running), None

        zeros = jnp.zeros(self.env.num_envs, jnp.float32)
        carry = (env_state, observation, zeros, zeros, jnp.float32(1.0), jnp.ones(self.env.num_envs, bool))
        (_, _, returns, discounted, _, _), _ = jax.lax.scan(step, carry, length=self.env.steps_per_episode)
        return {"return": returns, "mc_return": discounted, "q_estimate": q_estimate}


"""MuJoCo Playground's DM Control Suite on MJX, vmapped over `num_envs` environments, as pure JAX functions.

Needs the `playground` extra (`pip install -e .[playground]`: mujoco-mjx, playground).

- Tasks by name: the host env's `"domain-task"` names (`cartpole-balance`, `cheetah-run`, `finger-turn_hard`)
  or Playground's own (`CartpoleBalance`); see `task_names()`.
- Physics: MJX with `impl="jax"` by default (Playground defaults to "warp", which needs a GPU; on CPU the JAX
  implementation is about 10x faster).
- Observations: each env's observation pytree flattened (leaves in pytree order) to float32 (num_envs, obs_size).
- Actions: the agent acts in [-1, 1]^A; actions are clipped and mapped affinely onto the actuators' ctrlrange.
- Episodes: `episode_length` control steps; with `action_repeat = k` an agent step repeats its action k times
  and sums the rewards. Time limits are counted here: a time limit is `truncated`, never `terminated`, and
  `StepResult.next_observation` is the real next observation, also where the env then auto-resets
  (`observation` is the reset one). `terminated` is Playground's `done` (non-finite physics).
- Randomness: env i's episode e starts from `fold_in(fold_in(key, i), e)`, `key` the one given to `reset`,
  so a rollout is a pure function of that key and the actions.
- Auto-reset: all envs of a batch start together and have the same length, so they end together; the reset
  runs under a `lax.cond` only on steps where some env ended, and is selected per env.
"""

from __future__ import annotations

import difflib
import os
from typing import Any, NamedTuple

os.environ.setdefault("MUJOCO_GL", "disable")  # must precede the first mujoco import

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from mujoco_playground import registry
from mujoco_playground._src import dm_control_suite

_POSE_FIELDS = ("qpos", "qvel", "mocap_pos", "mocap_quat", "xfrc_applied")  # what Playground's renderer reads
# Host-style names whose Playground name is not their CamelCase form.
_ALIASES = {"point_mass-easy": "PointMass", "ball_in_cup-catch": "BallInCup"}


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))


def task_names() -> tuple[str, ...]:
    """Playground's DM Control Suite envs (`CartpoleBalance`, ...); `"domain-task"` names map onto these."""
    return tuple(dm_control_suite.ALL_ENVS)


def playground_name(task: str) -> str:
    """`"cartpole-balance"` or `"CartpoleBalance"` -> `"CartpoleBalance"`; raises ValueError if unknown."""
    names = task_names()
    if task in names:
        return task
    candidate = _ALIASES.get(task, _camel(task))
    if candidate in names:
        return candidate
    close = difflib.get_close_matches(candidate, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else f"; known: {', '.join(names)}"
    raise ValueError(f"no MuJoCo Playground DM Control Suite env for {task!r}{hint}")


class VecEnvState(flax.struct.PyTreeNode):
    """State of `num_envs` environments (leading axis num_envs on every per-env leaf).

    Attributes:
      physics: Playground `State` (MJX data, observation, reward, done, metrics, info), batched.
      episode: (num_envs,) int32, index of each env's current episode (seeds its reset).
      episode_step: (num_envs,) int32, agent steps taken in the current episode.
      episode_return: (num_envs,) float32, undiscounted return of the current episode so far.
      key: the root key of the resets.
    """

    physics: Any
    episode: jax.Array
    episode_step: jax.Array
    episode_return: jax.Array
    key: jax.Array


class StepResult(NamedTuple):
    """What one vectorised agent step returns; leading axis num_envs."""

    observation: jax.Array  # (N, obs_size) the observation to act on next (the reset one where an episode ended)
    next_observation: jax.Array  # (N, obs_size) the real next observation (for the replay buffer)
    reward: jax.Array  # (N,) summed over the action repeats
    terminated: jax.Array  # (N,) bool, the task ended the episode (no bootstrapping)
    truncated: jax.Array  # (N,) bool, the time limit ended the episode (bootstrap through it)
    episode_return: jax.Array  # (N,) the finished episode's return where terminated | truncated, else 0


class MJXEnv:
    """`num_envs` copies of a Playground DM Control Suite task, stepped together by vmapped MJX.

    `reset` and `step` are pure and jit-friendly; jit them (or call them inside a jitted loop).
    """

    def __init__(self, task: str, num_envs: int, *, action_repeat: int = 1, episode_length: int = 1000,
                 impl: str = "jax"):
        if num_envs < 1 or action_repeat < 1 or episode_length < 1:
            raise ValueError(f"num_envs, action_repeat and episode_length must be >= 1, got "
                             f"{num_envs}, {action_repeat}, {episode_length}")
        self.name = playground_name(task)
        self.num_envs = num_envs
        self.action_repeat = action_repeat
        self.episode_length = episode_length
        self.steps_per_episode = -(-episode_length // action_repeat)  # agent steps
        self.env = registry.load(self.name, config_overrides={"impl": impl})
        model = self.env.mj_model
        low, high = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
        limited = model.actuator_ctrllimited.astype(bool)
        self._action_low = np.where(limited, low, -1.0).astype(np.float32)
        self._action_high = np.where(limited, high, 1.0).astype(np.float32)
        self.action_size = int(self.env.action_size)
        observation = jax.eval_shape(self.env.reset, jax.random.PRNGKey(0)).obs
        self.observation_size = int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(observation)))

    def pose(self, state: VecEnvState, index: int = 0) -> dict[str, jax.Array]:
        """What a frame of env `index` needs (jit-friendly): its MJX qpos, qvel, mocap and applied forces."""
        data = state.physics.data
        return {name: getattr(data, name)[index] for name in _POSE_FIELDS}

    def render(self, poses: dict[str, np.ndarray], size: int) -> list[np.ndarray]:
        """uint8 RGB frames (size, size, 3), one per entry of `pose` stacked over time (T, ...): Playground's
        `render_array` (mujoco.Renderer) from the model's camera 0, as the host env renders (the free camera
        if it has none); needs a rendering backend (MUJOCO_GL=egl)."""
        from types import SimpleNamespace

        from mujoco_playground._src.mjx_env import render_array

        poses = {name: np.asarray(value) for name, value in poses.items()}
        count = len(poses["qpos"])
        frames = [SimpleNamespace(data=SimpleNamespace(**{name: value[t] for name, value in poses.items()}))
                  for t in range(count)]
        model = self.env.mj_model
        camera = model.camera(0).name if model.ncam else None
        return render_array(model, frames, height=size, width=size, camera=camera)

    def _flatten(self, observation) -> jax.Array:
        leaves = jax.tree.leaves(observation)
        return jnp.concatenate([leaf.reshape(self.num_envs, -1) for leaf in leaves], axis=-1).astype(jnp.float32)

    def _reset_physics(self, key: jax.Array, episode: jax.Array):
        keys = jax.vmap(lambda i, e: jax.random.fold_in(jax.random.fold_in(key, i), e))(
            jnp.arange(self.num_envs), episode)
        return jax.vmap(self.env.reset)(keys)

    def reset(self, key: jax.Array) -> tuple[VecEnvState, jax.Array]:
        """Starts episode 0 of every env. Returns the state and the observations (num_envs, obs_size)."""
        zeros = jnp.zeros(self.num_envs, jnp.int32)
        physics = self._reset_physics(key, zeros)
        state = VecEnvState(physics=physics, episode=zeros, episode_step=zeros,
                            episode_return=jnp.zeros(self.num_envs, jnp.float32), key=key)
        return state, self._flatten(physics.obs)

    def step(self, state: VecEnvState, action: jax.Array) -> tuple[VecEnvState, StepResult]:
        """One agent step of every env. action: (num_envs, A) in [-1, 1]."""
        action = jnp.clip(action, -1.0, 1.0)
        control = self._action_low + (action + 1.0) * 0.5 * (self._action_high - self._action_low)

        def repeat(physics, _):
            physics = jax.vmap(self.env.step)(physics, control)
            return physics, (physics.reward, physics.done)

        physics, (rewards, dones) = jax.lax.scan(repeat, state.physics, length=self.action_repeat)
        reward = jnp.sum(rewards, axis=0).astype(jnp.float32)
        terminated = jnp.any(dones > 0, axis=0)
        episode_step = state.episode_step + 1
        truncated = (episode_step >= self.steps_per_episode) & ~terminated
        ended = terminated | truncated
        episode_return = state.episode_return + reward
        next_observation = self._flatten(physics.obs)

        episode = state.episode + ended.astype(jnp.int32)

        def reset_ended(physics):
            fresh = self._reset_physics(state.key, episode)
            select = lambda new, old: jnp.where(ended.reshape((-1,) + (1,) * (old.ndim - 1)), new, old)
            return jax.tree.map(select, fresh, physics)

        physics = jax.lax.cond(jnp.any(ended), reset_ended, lambda physics: physics, physics)
        new_state = VecEnvState(
            physics=physics,
            episode=episode,
            episode_step=jnp.where(ended, 0, episode_step),
            episode_return=jnp.where(ended, 0.0, episode_return),
            key=state.key,
        )
        result = StepResult(
            observation=self._flatten(physics.obs),
            next_observation=next_observation,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            episode_return=jnp.where(ended, episode_return, 0.0),
        )
        return new_state, result

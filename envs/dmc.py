"""dm-control suite tasks as flat-vector environments, the way dmc2gym presents them to BEER's code.

- Tasks by name, `"domain-task"` (`cheetah-run`, `humanoid-stand`, `ball_in_cup-catch`, `finger-turn_hard`).
- Observations: the observation dict flattened in the task's own `observation_spec()` key order (a fixed
  `OrderedDict` per task, the order dmc2gym uses), as float32.
- Actions: the agent acts in [-1, 1]^A; values are clipped to that box and mapped affinely onto the task's
  action bounds (identical for every suite task except quadruped and lqr).
- Episodes: `episode_length` control steps (1000, the suite default); with `action_repeat = k` an agent step
  repeats its action k times and sums the rewards, so an episode has ceil(1000 / k) agent steps.
- Time limits are counted here (the suite's own is switched off), so a time limit is reported as
  `truncated=True, terminated=False` and the returned observation is the real next observation: the
  environment never auto-resets. `terminated` is True only when the task itself ends an episode with
  discount 0; a learner must bootstrap through truncations.
- Seeding: `reset(seed)` reseeds the task's RandomState, so an episode is a pure function of its seed and its
  actions (MuJoCo is deterministic). Seeds derive from the run's JAX root key (`seed_from_key`).
- Rendering: off unless `render=True`. `MUJOCO_GL` defaults to `disable` (set before MuJoCo is imported);
  set `MUJOCO_GL=egl` in the environment to render without a display.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "disable")  # must precede the first mujoco import

import difflib
import math
from typing import NamedTuple

import jax
import numpy as np
from dm_control import suite

EPISODE_LENGTH = 1000  # control steps per episode in every suite task except lqr


def task_names() -> tuple[str, ...]:
    """Every suite task as `"domain-task"`."""
    return tuple(f"{domain}-{task}" for domain, task in suite.ALL_TASKS)


def unknown_task_message(name: str) -> str:
    """One line for an unknown task name: the closest known names, else the known domains."""
    close = difflib.get_close_matches(str(name), task_names(), n=3, cutoff=0.6)
    if close:
        return f"unknown dm-control task {name!r}; did you mean {' or '.join(map(repr, close))}?"
    domains = sorted({domain for domain, _ in suite.ALL_TASKS})
    return (f"unknown dm-control task {name!r}: expected 'domain-task' with a domain in {', '.join(domains)} "
            "(all names: envs.dmc.task_names())")


def parse_task_name(name: str) -> tuple[str, str]:
    """`"finger-turn_hard"` -> `("finger", "turn_hard")`; raises ValueError for an unknown task."""
    domain, _, task = str(name).partition("-")
    if (domain, task) not in suite.ALL_TASKS:
        raise ValueError(unknown_task_message(name))
    return domain, task


def seed_from_key(key: jax.Array, *indices: int) -> int:
    """A 31-bit integer seed derived from a JAX key folded with `indices` (e.g. the episode number)."""
    for index in indices:
        key = jax.random.fold_in(key, index)
    return int(jax.random.randint(key, (), 0, 2**31 - 1))


class Step(NamedTuple):
    """Result of one agent step."""

    observation: np.ndarray  # (obs_size,) float32, the real next observation (also at a time limit)
    reward: float  # summed over the repeated actions
    terminated: bool  # the task ended the episode (a terminal state: do not bootstrap)
    truncated: bool  # the time limit ended the episode (not a terminal state: bootstrap)


class DMCEnv:
    """One dm-control suite task with flat observations, [-1, 1] actions and explicit truncation.

    Args:
      name: `"domain-task"`, see `task_names()`.
      seed: seed of the first episode if `reset()` is called without one.
      action_repeat: control steps per agent step (rewards summed).
      episode_length: control steps per episode (the time limit).
      render: allow `render()`; needs `MUJOCO_GL` set to a working backend (egl) before import.
    """

    def __init__(self, name: str, *, seed: int = 0, action_repeat: int = 1,
                 episode_length: int = EPISODE_LENGTH, render: bool = False):
        domain, task = parse_task_name(name)
        if action_repeat < 1 or episode_length < 1:
            raise ValueError(f"action_repeat and episode_length must be >= 1, got {action_repeat}, {episode_length}")
        if render and os.environ.get("MUJOCO_GL") == "disable":
            raise RuntimeError("render=True needs a rendering backend: set MUJOCO_GL=egl before importing envs.dmc")
        self.name = name
        self.action_repeat = int(action_repeat)
        self.episode_length = int(episode_length)
        self._render = render
        self._env = suite.load(domain, task, task_kwargs={"random": int(seed), "time_limit": float("inf")})
        self._seed = int(seed)
        spec = self._env.action_spec()
        self._action_low = np.asarray(spec.minimum, np.float64) * np.ones(spec.shape)
        self._action_high = np.asarray(spec.maximum, np.float64) * np.ones(spec.shape)
        self.observation_keys = tuple(self._env.observation_spec().keys())
        self.observation_size = int(sum(math.prod(s.shape) for s in self._env.observation_spec().values()))
        self.action_size = int(math.prod(spec.shape))
        self.max_episode_steps = -(-self.episode_length // self.action_repeat)
        self._control_steps = 0
        self._needs_reset = True

    def _flatten(self, observation) -> np.ndarray:
        return np.concatenate(
            [np.asarray(observation[key], np.float32).reshape(-1) for key in self.observation_keys])

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Starts an episode whose initial state is drawn from `seed` (default: the constructor's seed)."""
        self._env.task.random.seed(self._seed if seed is None else int(seed))
        self._control_steps = 0
        self._needs_reset = False
        return self._flatten(self._env.reset().observation)

    def step(self, action: np.ndarray) -> Step:
        """Applies `action` in [-1, 1]^A (clipped) `action_repeat` times."""
        if self._needs_reset:
            raise RuntimeError("step() after the end of an episode: call reset() first")
        action = np.clip(np.asarray(action, np.float64).reshape(self.action_size), -1.0, 1.0)
        scaled = self._action_low + (action + 1.0) * 0.5 * (self._action_high - self._action_low)
        reward, terminated, truncated = 0.0, False, False
        for _ in range(self.action_repeat):
            timestep = self._env.step(scaled)
            self._control_steps += 1
            reward += timestep.reward or 0.0
            terminated = timestep.last() and timestep.discount == 0.0
            # The suite's time limit is off, so any other LAST is a task-side end without a terminal state.
            truncated = (not terminated) and (timestep.last() or self._control_steps >= self.episode_length)
            if terminated or truncated:
                break
        self._needs_reset = terminated or truncated
        return Step(self._flatten(timestep.observation), float(reward), bool(terminated), bool(truncated))

    def render(self, height: int = 84, width: int = 84, camera_id: int = 0) -> np.ndarray:
        """RGB frame (height, width, 3) uint8; only when constructed with `render=True`."""
        if not self._render:
            raise RuntimeError("rendering is off: construct the env with render=True (and MUJOCO_GL=egl)")
        return self._env.physics.render(height=height, width=width, camera_id=camera_id)

    @property
    def physics(self):
        """The underlying MuJoCo physics (for tests and diagnostics)."""
        return self._env.physics

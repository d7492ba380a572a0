"""DDPG / BEER-DDPG on dm-control: `--config=configs/rl.py:<preset>`.

Presets:
- a dm-control task name (`humanoid-stand`, `cheetah-run`, ...): the official BEER settings (sweetice/BEER-ICLR2024
  main.py / BEER.py): 1M env steps, 25k uniform-random steps, one update per env step, batch 256, 1M replay,
  Adam 3e-4, gamma 0.99, tau 0.005, exploration std 0.1, BEER beta 1e-3, eval every 10k steps over 10 episodes.
  `PAPER_TASKS` is NOT established from a primary source: the paper (He et al., "Adaptive Regularization of
  Representation Rank as an Implicit Constraint of Bellman Equation", ICLR 2024, arXiv 2404.12754) names 12 DMC
  tasks, but its body was not reachable, and the official code (sweetice/BEER-ICLR2024 @81834e5: README.md,
  main.py) lists none (README runs humanoid-stand only); a search of the stored arXiv HTML and review pages
  on 2026-12-01 again reached only the abstract. The list below is an unverified guess; any suite task is
  accepted. On MJX (MuJoCo Playground's suite, `train.rl_mjx`, `train.rl_grid`) all of it exists except
  quadruped-run and quadruped-walk, which run on the host loop.
- `cpu`: a short cartpole-balance run (7.5k agent steps, action repeat 4, UTD 2) that finishes within 5 minutes
  on 2 CPU cores.
Pick the method with `--config.method=beer|ddpg`.
"""

from __future__ import annotations

import os

import ml_collections

from configs._common import logging_config, validate_logging
from jaxrep.config_checks import ConfigError, require, require_choice, require_positive
from jaxrep.rl.beer import FORMS as BEER_FORMS
from jaxrep.rl.networks import INIT_SCHEMES

# Unverified guess at the paper's 12 tasks: neither the paper's body nor the official
# code @81834e5 was found to list them; only the count (12, abstract) and humanoid-stand (README) are confirmed.
PAPER_TASKS = (
    "acrobot-swingup", "finger-turn_hard", "fish-swim", "hopper-hop", "hopper-stand", "humanoid-run",
    "humanoid-stand", "humanoid-walk", "pendulum-swingup", "quadruped-run", "quadruped-walk", "reacher-hard",
)


def _paper_config(task: str) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = task  # dm-control task, "domain-task"
    config.method = "beer"  # "beer" (DDPG + BEER regulariser) or "ddpg"
    config.seed = 0  # root PRNG key; parameters, exploration, sampling and env seeds all derive from it

    config.env = ml_collections.ConfigDict()
    config.env.action_repeat = 1  # control steps per agent step (dmc2gym frame_skip; 1 in the paper)
    config.env.episode_length = 1000  # control steps per episode (the suite's time limit)

    config.total_env_steps = 1_000_000  # agent steps to train for
    config.start_steps = 25_000  # uniform-random actions before this; updates start after it
    config.updates_per_step = 1  # update-to-data ratio
    config.update_every = 1  # env steps between update calls; each call fuses update_every * UTD updates
    config.batch_size = 256  # transitions per update
    config.replay_capacity = 1_000_000  # FIFO ring buffer size (device memory)

    config.agent = ml_collections.ConfigDict()
    config.agent.hidden_sizes = (256, 256)  # actor and critic ReLU widths; the last is the feature size
    config.agent.init_scheme = "torch"  # "torch" (official PyTorch Linear init) or "flax"
    config.agent.actor_learning_rate = 3e-4  # Adam
    config.agent.critic_learning_rate = 3e-4  # Adam
    config.agent.discount = 0.99  # gamma of the TD target
    config.agent.tau = 0.005  # Polyak rate of both targets, every update
    config.agent.exploration_noise = 0.1  # std of the Gaussian exploration noise on [-1, 1] actions

    config.beer = ml_collections.ConfigDict()
    config.beer.coef = 1e-3  # beta, weight of the hinge in the critic loss
    config.beer.gamma = 0.99  # discount inside the bound (official code: fixed 0.99, independent of agent.discount)
    config.beer.form = "official"  # "official" (mixed online/target features) or "clean" (one feature source)

    config.eval_every = 10_000  # env steps between deterministic evaluations
    config.eval_episodes = 10  # episodes per evaluation, from a fixed set of seeds
    config.video = ml_collections.ConfigDict()
    config.video.enabled = False  # at each evaluation, film its first episode to workdir/videos/<step>.mp4
    # (needs MUJOCO_GL=egl, set before the run starts; software EGL renders about 40 frames/s at 84 x 84)
    config.video.size = 84  # frame side in pixels
    config.video.fps = 30  # playback rate of the MP4
    config.log_every = 1_000  # env steps between training-metric logs (incl. rank of the critic features)
    config.logging = logging_config()
    config.checkpoint_every = 10_000  # env steps between checkpoints (replay buffer included)
    config.checkpoint_keep = 2  # checkpoints kept on disk
    return config


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    """The config of `preset`: a dm-control task name (paper settings) or "cpu"."""
    from envs.dmc import task_names, unknown_task_message  # imports dm-control only when a config is built

    preset = (preset or "cpu").strip()
    if preset == "cpu":
        config = _paper_config("cartpole-balance")
        config.env.action_repeat = 4  # 250 agent steps per episode (PlaNet/DrQ use 8 on cartpole)
        config.total_env_steps = 7_500  # the 10k version's evaluation return was 998 at 5k steps (one run)
        config.start_steps = 1_000
        config.updates_per_step = 2
        config.update_every = 2
        config.eval_every = 2_500
        config.eval_episodes = 5
        config.log_every = 500
        config.checkpoint_every = 2_500
        config.replay_capacity = 100_000
        return config
    if preset in task_names():
        return _paper_config(preset)
    raise ConfigError(f"preset: not 'cpu' and {unknown_task_message(preset)}")


def validate_agent(config: ml_collections.ConfigDict) -> None:
    """The checks the host and the MJX loop share: method, agent, BEER, batch and replay; ConfigError naming
    the field."""
    require_choice(config, "method", ("beer", "ddpg"))
    validate_logging(config)
    require_choice(config, "beer.form", BEER_FORMS)
    require_choice(config, "agent.init_scheme", INIT_SCHEMES)
    require_positive(config, "env.action_repeat", "env.episode_length", "total_env_steps", "batch_size",
                     "replay_capacity", "agent.actor_learning_rate", "agent.critic_learning_rate", "agent.discount",
                     "agent.tau", "beer.gamma")
    require(config.start_steps >= 0, "start_steps", f"must be >= 0, got {config.start_steps}")
    require(config.agent.tau <= 1, "agent.tau", f"must be in (0, 1], got {config.agent.tau}")
    require(config.agent.exploration_noise >= 0, "agent.exploration_noise",
            f"must be >= 0, got {config.agent.exploration_noise}")
    require(config.beer.coef >= 0, "beer.coef", f"must be >= 0, got {config.beer.coef}")
    require(len(config.agent.hidden_sizes) > 0 and all(int(w) > 0 for w in config.agent.hidden_sizes),
            "agent.hidden_sizes", f"must be positive widths, got {config.agent.hidden_sizes!r}")
    require(config.batch_size <= config.replay_capacity, "batch_size",
            f"{config.batch_size} is larger than the replay buffer (replay_capacity={config.replay_capacity})")
    require(config.start_steps >= config.batch_size, "start_steps",
            f"{config.start_steps} < batch_size={config.batch_size}: the first updates would sample a batch from "
            "fewer transitions than it holds")
    require_positive(config, "video.size", "video.fps")
    if config.video.enabled:
        require(os.environ.get("MUJOCO_GL", "disable") not in ("disable", ""), "video.enabled",
                "needs a rendering backend: run with MUJOCO_GL=egl (set before the run starts)")


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the first invalid field; call before building anything."""
    from envs.dmc import task_names, unknown_task_message

    require(config.task in task_names(), "task", unknown_task_message(config.task))
    validate_agent(config)
    require_positive(config, "updates_per_step", "update_every", "eval_every", "eval_episodes", "log_every",
                     "checkpoint_every", "checkpoint_keep")
    episode_steps = -(-config.env.episode_length // config.env.action_repeat)
    require(config.replay_capacity >= episode_steps, "replay_capacity",
            f"{config.replay_capacity} < one episode ({episode_steps} agent steps): resume replays the current "
            "episode's actions from the buffer")


__all__ = ["ConfigError", "PAPER_TASKS", "get_config", "validate", "validate_agent"]

"""A grid of tasks x methods x seeds for `train/rl_grid.py`: `--config=configs/rl_grid.py:<preset>`.

Every cell is one task and method; on the host dm-control loop (`train.rl`) each seed is its own run, on MJX
(`train.rl_mjx`) the cell's seeds are one vmapped program (`num_seeds`). A cell's run config is the task's
preset of its loop (`configs/rl.py:<task>`, `configs/rl_mjx.py:<task>`: the official agent settings) with the
grid-wide budget below.

Presets:
- `cpu`: cartpole-balance and cartpole-swingup, BEER and DDPG, 2 seeds, 5k env steps with action repeat 4:
  a few minutes on 2 CPU cores per cell.
- `study`: the 4-task x 5-seed CPU study of docs/results/beer_20k.md, 20k agent steps per run (2k uniform-random
  first, evaluated every 2k): 0.9 hours on 2 CPU cores. cartpole-swingup runs on MJX (its 5 seeds one vmapped
  program: 3-4 min per cell); MJX's contact-rich tasks crawl on this CPU (cheetah-run: 3-5 agent steps/s per
  seed, 5 seeds in one program, 2-3 hours per cell), so cheetah-run, walker-walk and reacher-easy run on the
  host dm-control loop (`host_tasks`): 1-2.5 min per 20k-step run, training included.
- `mechanism`: BEER's mechanism study (issue 31, docs/results/beer.md): cheetah-run and walker-walk on the host
  loop, cartpole-swingup on MJX, 5 seeds, 100k agent steps (10k uniform-random first, evaluated every 5k on 10
  episodes); the runs record the Q-estimation error, srank and BEER's cosine against its bound
  (`jaxrep.experiments.rl_grid.MECHANISM_METRICS`). About 11 min per host run with two runs sharing 2 CPU cores:
  ~4 hours in all, in resumable pieces. The committed study ran as several processes so that both cores work:
  one per task (`--config.tasks=cheetah-run --config.host_tasks=cheetah-run`, likewise walker-walk, and
  `--config.tasks=cartpole-swingup --config.host_tasks=`), walker-walk's DDPG cell split off
  (`--config.methods=ddpg`, its seed 4 in a process of its own: `--config.seed=4 --config.num_seeds=1`), each in a
  work directory of its own; `benchmarks.beer_report` reports the work directories as one grid.
"""

from __future__ import annotations

import ml_collections

from jaxrep.config_checks import ConfigError, require, require_choice, require_positive

LOOPS = ("auto", "host", "mjx")


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    preset = (preset or "cpu").strip()
    config = ml_collections.ConfigDict()
    config.tasks = "cartpole-balance,cartpole-swingup"  # comma-separated "domain-task" names
    config.methods = "beer,ddpg"  # comma-separated: "beer", "ddpg"
    config.num_seeds = 2  # seeds per cell: seed, seed + 1, ...
    config.seed = 0  # the first seed
    config.loop = "auto"  # "auto" (MJX where MuJoCo Playground has the task and is installed, else host), "host", "mjx"
    config.host_tasks = ""  # comma-separated tasks that "auto" runs on the host loop even where MJX has them
    config.total_env_steps = 5_000  # agent steps per run (per seed)
    config.start_steps = 1_000  # uniform-random actions before this; updates start after it
    config.eval_every = 1_000  # env steps between evaluations (and checkpoints)
    config.eval_episodes = 5  # host loop: episodes per evaluation (MJX: one per env)
    config.action_repeat = 4  # control steps per agent step; 0 keeps the task preset's (1, as in the paper)
    config.updates_per_step = 1  # update-to-data ratio on both loops
    config.batch_size = 256  # transitions per update (the paper's); start_steps must be at least this
    config.replay_capacity = 100_000  # capped at total_env_steps
    config.num_envs = 8  # MJX: envs stepped together per seed
    config.beer_coef = 1e-3  # beta of the "beer" cells
    if preset not in ("cpu", "study", "mechanism"):
        raise ConfigError(f"preset: unknown rl_grid preset {preset!r}; known: 'cpu', 'study', 'mechanism'")
    if preset == "study":
        config.tasks = "cartpole-swingup,cheetah-run,walker-walk,reacher-easy"
        config.host_tasks = "cheetah-run,walker-walk,reacher-easy"
        config.num_seeds = 5
        config.total_env_steps = 20_000
        config.start_steps = config.eval_every = 2_000
    if preset == "mechanism":
        config.tasks = "cheetah-run,walker-walk,cartpole-swingup"  # the host runs first, the MJX cell last
        config.host_tasks = "cheetah-run,walker-walk"
        config.num_seeds = 5
        config.total_env_steps = 100_000
        config.start_steps = 10_000
        config.eval_every = 5_000
        config.eval_episodes = 10
    return config


def names(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the first invalid field; the cells' own configs are checked when they start."""
    require(bool(names(config.tasks)), "tasks", "name at least one task")
    require(set(names(config.methods)) <= {"beer", "ddpg"} and bool(names(config.methods)), "methods",
            f"comma-separated 'beer' / 'ddpg', got {config.methods!r}")
    require_choice(config, "loop", LOOPS)
    require(set(names(config.host_tasks)) <= set(names(config.tasks)), "host_tasks",
            f"{config.host_tasks!r} names tasks not in tasks={config.tasks!r}")
    require_positive(config, "num_seeds", "total_env_steps", "eval_every", "eval_episodes", "updates_per_step",
                     "batch_size", "replay_capacity", "num_envs")
    require(config.action_repeat >= 0, "action_repeat", f"must be >= 0 (0: the preset's), got {config.action_repeat}")
    require(config.total_env_steps % config.eval_every == 0, "eval_every",
            f"{config.eval_every} does not divide total_env_steps={config.total_env_steps}")
    require(config.loop == "host" or config.eval_every % config.num_envs == 0, "num_envs",
            f"{config.num_envs} does not divide eval_every={config.eval_every} (an MJX chunk is one evaluation period)")


__all__ = ["ConfigError", "get_config", "names", "validate"]

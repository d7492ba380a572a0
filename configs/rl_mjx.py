"""DDPG / BEER-DDPG fully on the device (MJX + `lax.scan`): `--config=configs/rl_mjx.py:<preset>`.

Presets:
- a DM Control Suite task that MuJoCo Playground provides, as `"domain-task"` (`cheetah-run`, `walker-walk`):
  the official BEER agent settings (`configs.rl`: 256-256 nets, Adam 3e-4, batch 256, tau 0.005, beta 1e-3,
  25k uniform-random steps, 1M env steps, 1M replay, UTD 1) collected by 16 envs stepped together, so 16
  updates per loop iteration; 625 iterations (10k env steps) per jitted chunk, evaluated after each.
- `cpu`: cartpole-balance with 8 envs, action repeat 4, 10k env steps, UTD 2 (16 updates per iteration),
  500-step chunks: the host loop's `cpu` preset (`configs/rl.py:cpu`) on the device. MJX compiles slowly on
  CPU (about 30 s for the chunk and again for the evaluation).
Pick the method with `--config.method=beer|ddpg`; `--config.num_seeds=N` runs N seeds in one program and
`--config.beer_coefs=0,1e-3,1e-2` a grid of BEER weights (each with the N seeds). Needs the `playground` extra.
"""

from __future__ import annotations

import ml_collections

from configs.rl import get_config as host_config
from configs.rl import validate_agent
from jaxrep.config_checks import ConfigError, require, require_choice, require_positive


def _config(task: str) -> ml_collections.ConfigDict:
    host = host_config(task)  # the agent's settings are the host loop's, shared
    config = ml_collections.ConfigDict()
    config.task = task  # "domain-task"; must be a MuJoCo Playground DM Control Suite env (envs.mjx)
    config.method = host.method  # "beer" (DDPG + BEER regulariser) or "ddpg"
    config.logging = host.logging  # optional W&B (configs/_common.py:logging_config)
    config.seed = 0  # root PRNG key; parameters, exploration, env resets and evaluation derive from it
    config.num_seeds = 1  # independent runs vmapped in one program, seeds seed, seed + 1, ... (jaxrep.rl.population)
    config.beer_coefs = ""  # comma-separated BEER weights, each run with num_seeds seeds in the same program;
    # "": beer.coef alone (method 'beer' only)

    config.env = ml_collections.ConfigDict()
    config.env.num_envs = 16  # envs stepped together (vmapped) per loop iteration
    config.env.action_repeat = host.env.action_repeat  # control steps per agent step
    config.env.episode_length = host.env.episode_length  # control steps per episode
    config.env.impl = "jax"  # MJX implementation: "jax" (CPU and GPU) or "warp" (GPU only)

    config.total_env_steps = host.total_env_steps  # agent steps to train for, summed over the envs
    config.start_steps = host.start_steps  # uniform-random actions before this; updates start after it
    config.updates_per_iteration = 16  # updates per loop iteration; UTD = updates_per_iteration / num_envs
    config.iterations_per_chunk = 625  # loop iterations per jitted `lax.scan` call (a checkpoint may follow)
    config.batch_size = host.batch_size  # transitions per update
    config.replay_capacity = host.replay_capacity  # FIFO ring buffer size (device memory)
    config.agent = host.agent  # networks and optimisers (see configs/rl.py)
    config.beer = host.beer  # BEER regulariser (see configs/rl.py)

    config.eval_every_chunks = 1  # chunks between deterministic evaluations (num_envs episodes in parallel)
    config.video = host.video  # video.enabled: film member 0's first evaluation episode to videos/<step>.mp4
    config.checkpoint_every_chunks = 1  # chunks between checkpoints; the last chunk is always saved
    config.checkpoint_keep = 2  # checkpoints kept on disk
    return config


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    """The config of `preset`: a dm-control task name (the official agent settings) or "cpu"."""
    preset = (preset or "cpu").strip()
    if preset == "cpu":
        config = _config("cartpole-balance")
        config.env.num_envs = 8
        config.env.action_repeat = 4  # 250 agent steps per episode, as configs/rl.py:cpu
        config.total_env_steps = 10_000
        config.start_steps = 1_000
        config.updates_per_iteration = 16  # UTD 2
        config.iterations_per_chunk = 125  # 1000 env steps per chunk
        config.replay_capacity = 100_000
        config.eval_every_chunks = 5
        config.checkpoint_every_chunks = 5
        return config
    return _config(preset)


def beer_coefs(config: ml_collections.ConfigDict) -> tuple[float, ...]:
    """The BEER weight grid of `config.beer_coefs` (empty: none); ConfigError naming the field if unreadable."""
    try:
        return tuple(float(part) for part in config.beer_coefs.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"beer_coefs: comma-separated numbers expected, got {config.beer_coefs!r}") from None


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the first invalid field; call before building anything."""
    from envs.mjx import playground_name  # imports MuJoCo Playground only when a config is checked

    try:
        playground_name(config.task)
    except ValueError as error:
        raise ConfigError(f"task: {error}") from None
    validate_agent(config)
    require_choice(config, "env.impl", ("jax", "warp"))
    coefs = beer_coefs(config)
    require(not coefs or config.method == "beer", "beer_coefs", f"a BEER weight grid needs method 'beer', got "
            f"{config.method!r}")
    require(all(coef >= 0 for coef in coefs), "beer_coefs", f"weights must be >= 0, got {config.beer_coefs!r}")
    require_positive(config, "num_seeds", "env.num_envs", "iterations_per_chunk", "eval_every_chunks",
                     "checkpoint_every_chunks",
                     "checkpoint_keep")
    require(config.updates_per_iteration >= 0, "updates_per_iteration",
            f"must be >= 0, got {config.updates_per_iteration}")
    require(config.replay_capacity >= config.env.num_envs, "replay_capacity",
            f"{config.replay_capacity} < num_envs={config.env.num_envs}: one iteration inserts num_envs transitions")
    chunk = config.env.num_envs * config.iterations_per_chunk
    require(config.total_env_steps % chunk == 0, "total_env_steps",
            f"{config.total_env_steps} is not a multiple of num_envs * iterations_per_chunk = {chunk}")


__all__ = ["ConfigError", "beer_coefs", "get_config", "validate"]

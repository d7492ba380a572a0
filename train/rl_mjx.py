"""Train DDPG or BEER-DDPG with the whole loop on the device (MJX envs, `lax.scan`), purejaxrl style.

  python -m train.rl_mjx --config=configs/rl_mjx.py:cpu --workdir=/tmp/rl_mjx_cpu
  python -m train.rl_mjx --config=configs/rl_mjx.py:cheetah-run --config.env.num_envs=256 --workdir=...

The run is a pure function of a carry (`jaxrep.rl.fused.FusedState`: train state, replay buffer, env states,
counters, root keys). The host only calls the jitted chunk (`FusedDDPG.run`: `iterations_per_chunk` loop
iterations of act, vectorised env step, replay insert and updates) over and over, logs its summary, evaluates
every `eval_every_chunks` chunks (`num_envs` deterministic episodes in parallel, from the same resets each
time) and checkpoints the carry every `checkpoint_every_chunks` chunks (without MJX's zero-size arrays, which orbax
cannot save; they are rebuilt on restore). A killed or preempted (SIGTERM) run
resumes from the last checkpoint and continues exactly as the uninterrupted one. Outputs in `workdir`:
config.json, metrics.jsonl, tensorboard/, learning_curve.png, checkpoints/. Needs the `playground` extra.
"""

from __future__ import annotations

import copy
import os
import time

import jax
import numpy as np

from configs.rl_mjx import validate
from envs.mjx import MJXEnv
from jaxrep.checkpoint import Checkpointer, PreemptionGuard, abstract_like, with_empty, without_empty
from jaxrep.logging import MetricLogger, progress_bar, save_curves
from jaxrep.rl.fused import FusedDDPG
from jaxrep.workdir_lock import locks_workdir
from train.cli import run_program
from train.rl import make_agent, rl_main, run_summary, start_run

# Independent random streams folded out of the root key.
INIT_STREAM, EVAL_STREAM = range(2)


def make_env(config) -> MJXEnv:
    return MJXEnv(config.task, config.env.num_envs, action_repeat=config.env.action_repeat,
                  episode_length=config.env.episode_length, impl=config.env.impl)


def make_fused(config) -> FusedDDPG:
    env = make_env(config)
    return FusedDDPG(make_agent(config, env.action_size), env, config.updates_per_iteration)


@locks_workdir
def train_and_evaluate(config, workdir: str) -> dict:
    """Trains for `config.total_env_steps` env steps (resuming from `workdir` if it holds a checkpoint)."""
    root = start_run(config, workdir, validate)
    init_key, eval_key = (jax.random.fold_in(root, stream) for stream in (INIT_STREAM, EVAL_STREAM))

    fused = make_fused(config)
    state = jax.jit(fused.init, static_argnums=1)(init_key, config.replay_capacity)
    progress = {"chunk": 0, "evals": []}
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), save_every=config.checkpoint_every_chunks,
                                keep=config.checkpoint_keep)
    if checkpointer.latest_step() is not None:
        restored, progress = checkpointer.restore(abstract_like(without_empty(state)))
        state = with_empty(restored, like=state)

    run = jax.jit(fused.run, static_argnums=1, donate_argnums=0)
    evaluate = jax.jit(fused.evaluate)
    steps_per_chunk = config.env.num_envs * config.iterations_per_chunk
    num_chunks = config.total_env_steps // steps_per_chunk
    logger = MetricLogger(workdir)
    run_start, run_start_chunk = time.perf_counter(), progress["chunk"]
    preempted = False
    bar = progress_bar(config.total_env_steps, initial=progress["chunk"] * steps_per_chunk,
                       desc=f"{config.task} {config.method} (mjx)")
    with PreemptionGuard() as guard:
        while progress["chunk"] < num_chunks:
            start = time.perf_counter()
            state, summary = run(state, config.iterations_per_chunk)
            record = jax.device_get(summary)
            progress["chunk"] += 1
            env_step = int(state.env_step)
            # The first chunk of a process includes compilation.
            record["perf/env_steps_per_s"] = steps_per_chunk / (time.perf_counter() - start)
            record["perf/updates"] = state.agent.step
            logger.log(env_step, {name: value for name, value in record.items() if np.isfinite(value)})
            bar.update(steps_per_chunk)

            if progress["chunk"] % config.eval_every_chunks == 0 or progress["chunk"] == num_chunks:
                returns = np.asarray(evaluate(state.agent.params["actor"], eval_key))
                progress["evals"].append([env_step, float(returns.mean())])
                logger.log(env_step, {"eval/return": returns.mean(), "eval/return_std": returns.std()})
                steps, means = zip(*progress["evals"])
                save_curves(os.path.join(workdir, "learning_curve.png"), {config.method: (steps, means)},
                            xlabel="env steps", ylabel="eval return", title=f"{config.task} (mjx)")
                bar.set_postfix(eval_return=f"{returns.mean():.1f}")

            preempted = guard.requested  # SIGTERM: save now and stop
            # A copy: the JSON item is written asynchronously while the loop moves on.
            checkpointer.save(progress["chunk"], without_empty(state), copy.deepcopy(progress),
                              force=preempted or progress["chunk"] == num_chunks)
            if preempted:
                break
    bar.close()
    checkpointer.close()
    logger.close()
    return run_summary(env_steps=int(state.env_step), updates=int(state.agent.step), evals=progress["evals"],
                       steps_this_run=(progress["chunk"] - run_start_chunk) * steps_per_chunk,
                       seconds=time.perf_counter() - run_start, preempted=preempted, state=state)


def main(argv):
    rl_main(argv, train_and_evaluate)  # compilation included in its env steps/s


if __name__ == "__main__":
    # Flags are defined only when run as a program, so importing this module (tests, benchmarks) adds none.
    run_program(main, config="configs/rl_mjx.py:cpu", workdir=None,
                workdir_help="Directory for checkpoints, metrics and plots.", lock_config=True)

"""Env steps/s of N seeds in one vmapped fused program against N separate fused runs (MJX + `lax.scan`).

  python -m benchmarks.population_throughput --task=cartpole-balance --num_seeds=1,2,4,8
  python -m benchmarks.population_throughput --num_seeds=1,8,64 --num_envs=16   # on a GPU

Every run is BEER-DDPG at the paper's settings (256-256 nets, batch 256, one update per env step) with
`--num_envs` MJX envs per seed (`jaxrep.experiments.rl_mjx.make_population`). Measured in the training phase, after a
compile-and-warm-up chunk: the summed env steps/s of all seeds. N separate runs of the 1-seed program take N
times as long as one, so their summed throughput is the 1-seed figure whatever N is; the ratio column is the
speed-up of running the N seeds as one program. On CPU the cores are shared by the N seeds either way, so the
gain there comes only from larger matmuls; an accelerator has the headroom to run them side by side.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("MUJOCO_GL", "disable")

import jax
import numpy as np
from absl import app, flags, logging

from configs.rl_mjx import get_config
from jaxrep.experiments.rl_mjx import make_population

_TASK = flags.DEFINE_string("task", "cartpole-balance", "DM Control Suite task in MuJoCo Playground.")
_NUM_SEEDS = flags.DEFINE_list("num_seeds", ["1", "2", "4", "8"], "Population sizes to measure.")
_NUM_ENVS = flags.DEFINE_integer("num_envs", 8, "MJX envs per seed.")
_ITERATIONS = flags.DEFINE_integer("iterations", 50, "Loop iterations per jitted chunk.")
_CHUNKS = flags.DEFINE_integer("chunks", 3, "Timed chunks per population size.")
_IMPL = flags.DEFINE_string("impl", "jax", "MJX implementation: jax or warp (GPU).")


def population_steps_per_second(task: str, num_seeds: int, num_envs: int, iterations: int, chunks: int,
                                impl: str) -> tuple[float, float]:
    """(compile + first chunk seconds, summed env steps/s of the training phase) of a `num_seeds` population."""
    config = get_config(task)
    config.num_seeds, config.env.num_envs, config.env.impl = num_seeds, num_envs, impl
    config.iterations_per_chunk, config.updates_per_iteration = iterations, num_envs  # UTD 1
    steps_per_chunk = num_envs * iterations
    config.start_steps = max(config.batch_size, steps_per_chunk // 2)  # the timed chunks all train
    config.replay_capacity = (chunks + 1) * steps_per_chunk
    population = make_population(config)
    keys = jax.vmap(jax.random.PRNGKey)(np.arange(population.num_members))
    state = jax.jit(population.init, static_argnums=1)(keys, config.replay_capacity)
    run = jax.jit(population.run, static_argnums=1, donate_argnums=0)
    start = time.perf_counter()
    state, summary = run(state, iterations)
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(chunks):
        state, summary = run(state, iterations)
    jax.block_until_ready(state)
    assert np.all(np.asarray(summary["train/updates"]) == iterations * num_envs), "a timed chunk did not train"
    return compile_s, num_seeds * chunks * steps_per_chunk / (time.perf_counter() - start)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    sizes = [int(n) for n in _NUM_SEEDS.value]
    device = jax.devices()[0].device_kind
    rows = {n: population_steps_per_second(_TASK.value, n, _NUM_ENVS.value, _ITERATIONS.value, _CHUNKS.value,
                                           _IMPL.value) for n in sizes}
    single = rows[1][1] if 1 in rows else None
    print(f"Task `{_TASK.value}`, BEER-DDPG (256-256, batch 256, UTD 1), {_NUM_ENVS.value} MJX envs per seed "
          f"(impl={_IMPL.value}), {_ITERATIONS.value} iterations per chunk, device {device}, "
          f"{os.cpu_count()} CPU cores.\n")
    print("| seeds N | compile + first chunk (s) | env steps/s, all seeds | per seed | vs N separate runs |")
    print("|---|---|---|---|---|")
    for n, (compile_s, rate) in rows.items():
        ratio = f"{rate / single:.2f}x" if single else "-"
        print(f"| {n} | {compile_s:.1f} | {rate:.0f} | {rate / n:.0f} | {ratio} |", flush=True)


if __name__ == "__main__":
    app.run(main)

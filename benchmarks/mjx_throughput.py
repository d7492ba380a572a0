"""Env steps/s of the fused on-device loop (MJX + `lax.scan`) against the host dm-control loop, same task.

  python -m benchmarks.mjx_throughput --task=cartpole-balance --num_envs=32

Both loops run BEER-DDPG at the paper's settings (256-256 nets, batch 256, one update per env step) on the
same task (action repeat 1, 1000-step episodes), on whatever JAX device is the default (CPU here):
- fused (`jaxrep.experiments.rl_mjx.make_fused`): `num_envs` MJX envs (`impl=--impl`) stepped together; one jitted chunk
  of `--iterations` loop iterations is compiled once and called repeatedly. The first `--random_chunks`
  timed chunks are in the uniform-random phase (act + env + replay insert; the update `lax.cond` skips),
  the next `--train_chunks` in the training phase (`num_envs` updates per iteration, UTD 1).
- host (`benchmarks.rl_throughput.loop_steps_per_second`, i.e. `jaxrep.experiments.rl.train_and_evaluate`):
  one dm-control env stepped from Python with a jitted act, replay add and a jitted update per env step.
Also printed: raw dm-control env steps/s (no agent), the fused chunk's compile time, and the updates alone
(`updates_per_second`, same task, BEER, batch 256, `--seconds` each: 1 update per call, as the host loop
calls them, and `num_envs` fused per call, as the fused loop runs them), to give each loop's slowdown
against its updates alone (the issue's target: at most 10 %). Needs the
`playground` extra.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("MUJOCO_GL", "disable")

import jax
from absl import app, flags, logging

# rl_throughput defines --task, --batch_size, --fused, --seconds and --loop_steps at import; shared here.
from benchmarks.rl_throughput import (
    _LOOP_STEPS,
    _SECONDS,
    _TASK,
    loop_steps_per_second,
    raw_env_steps_per_second,
    updates_per_second,
)
from configs.rl_mjx import get_config
from jaxrep.experiments.rl_mjx import make_fused

_NUM_ENVS = flags.DEFINE_integer("num_envs", 32, "MJX envs stepped together.")
_ITERATIONS = flags.DEFINE_integer("iterations", 100, "Loop iterations per jitted chunk.")
_RANDOM_CHUNKS = flags.DEFINE_integer("random_chunks", 5, "Timed chunks in the uniform-random phase.")
_TRAIN_CHUNKS = flags.DEFINE_integer("train_chunks", 2, "Timed chunks in the training phase.")
_IMPL = flags.DEFINE_string("impl", "jax", "MJX implementation: jax or warp (GPU).")
_SKIP_HOST = flags.DEFINE_bool("skip_host", False, "Measure the fused loop only.")


def fused_steps_per_second(task: str, num_envs: int, iterations: int, random_chunks: int, train_chunks: int,
                           impl: str = "jax") -> dict:
    """Compile time and (random-phase, training-phase) env steps/s of the fused loop."""
    config = get_config(task)
    config.env.num_envs, config.env.impl = num_envs, impl
    config.iterations_per_chunk = iterations
    config.updates_per_iteration = num_envs  # UTD 1, as the host loop
    steps_per_chunk = num_envs * iterations
    config.start_steps = (1 + random_chunks) * steps_per_chunk  # the compile chunk and the timed random ones
    config.replay_capacity = (2 + random_chunks + train_chunks) * steps_per_chunk
    fused = make_fused(config)
    state = jax.jit(fused.init, static_argnums=1)(jax.random.PRNGKey(0), config.replay_capacity)
    run = jax.jit(fused.run, static_argnums=1, donate_argnums=0)

    def timed_chunks(state, chunks):
        start = time.perf_counter()
        for _ in range(chunks):
            state, summary = run(state, iterations)
        jax.block_until_ready((state, summary))
        return state, summary, time.perf_counter() - start

    state, _, compile_and_first = timed_chunks(state, 1)
    state, summary, random_time = timed_chunks(state, random_chunks)
    assert int(summary["train/updates"]) == 0 and int(state.agent.step) == 0, "random phase ran updates"
    state, summary, train_time = timed_chunks(state, train_chunks)
    assert int(state.agent.step) > 0, "training phase ran no update"
    return {
        "fused_compile_and_first_chunk_s": compile_and_first,
        "fused_random_phase_steps_per_s": random_chunks * steps_per_chunk / random_time,
        "fused_training_steps_per_s": train_chunks * steps_per_chunk / train_time,
    }


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    task = _TASK.value
    results = {"task": task, "device": jax.devices()[0].device_kind, "num_envs": _NUM_ENVS.value,
               "iterations_per_chunk": _ITERATIONS.value}
    results.update(fused_steps_per_second(task, _NUM_ENVS.value, _ITERATIONS.value, _RANDOM_CHUNKS.value,
                                          _TRAIN_CHUNKS.value, _IMPL.value))
    results["updates_alone_fused_per_s"] = updates_per_second(task, "beer", 256, _NUM_ENVS.value, _SECONDS.value)
    results["fused_training_slowdown_vs_updates_alone"] = (
        results["updates_alone_fused_per_s"] / results["fused_training_steps_per_s"] - 1.0)
    if not _SKIP_HOST.value:
        results["updates_alone_1_per_call_per_s"] = updates_per_second(task, "beer", 256, 1, _SECONDS.value)
        results["host_raw_env_steps_per_s"], _ = raw_env_steps_per_second(task)
        results["host_random_phase_steps_per_s"], results["host_training_steps_per_s"] = loop_steps_per_second(
            task, _LOOP_STEPS.value)
        results["host_training_slowdown_vs_updates_alone"] = (
            results["updates_alone_1_per_call_per_s"] / results["host_training_steps_per_s"] - 1.0)
    for name, value in results.items():
        print(f"{name}: {value:.2f}" if isinstance(value, float) else f"{name}: {value}", flush=True)
    if _SKIP_HOST.value:
        return
    r = results
    print()
    print(f"Task `{task}` (BEER-DDPG, 256-256, batch 256, UTD 1), device {r['device']}; fused: {r['num_envs']} MJX "
          f"envs (impl={_IMPL.value}), {r['iterations_per_chunk']} iterations per chunk.")
    print()
    print("| phase | host dm-control loop | fused MJX loop | fused / host |")
    print("|---|---|---|---|")
    print(f"| uniform-random (act + env + insert) | {r['host_random_phase_steps_per_s']:.0f} env steps/s | "
          f"{r['fused_random_phase_steps_per_s']:.0f} env steps/s | "
          f"{r['fused_random_phase_steps_per_s'] / r['host_random_phase_steps_per_s']:.1f}x |")
    print(f"| training (1 update per env step) | {r['host_training_steps_per_s']:.0f} env steps/s | "
          f"{r['fused_training_steps_per_s']:.0f} env steps/s | "
          f"{r['fused_training_steps_per_s'] / r['host_training_steps_per_s']:.2f}x |")
    print(f"| raw env, no agent (reference) | {r['host_raw_env_steps_per_s']:.0f} env steps/s | | |")
    print(f"| updates alone (BEER, batch 256) | {r['updates_alone_1_per_call_per_s']:.0f} updates/s (1 per call) | "
          f"{r['updates_alone_fused_per_s']:.0f} updates/s ({r['num_envs']} fused per call) | |")
    print(f"| training phase slower than its updates alone by | "
          f"{100 * r['host_training_slowdown_vs_updates_alone']:.0f} % | "
          f"{100 * r['fused_training_slowdown_vs_updates_alone']:.0f} % | |")
    print(f"\nFused chunk compile + first chunk: {r['fused_compile_and_first_chunk_s']:.1f} s.")


if __name__ == "__main__":
    app.run(main)

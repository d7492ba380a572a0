"""Throughput of the DDPG/BEER pieces (a benchmark, not a test). Run from the repository root:

  python -m benchmarks.rl_throughput --task=cheetah-run
  python -m benchmarks.rl_throughput --task=cheetah-run --profile   # only: the BEER update per kind of XLA op

Prints, for the task's observation/action sizes and the paper's networks (256-256) at batch 256:
1. updates/s of the jitted update: one `train(..., num_updates=1)` call per update (sampling included), and
   `num_updates` fused by `lax.scan` per call; DDPG and BEER.
2. env steps/s of the whole training loop (`jaxrep.experiments.rl.train_and_evaluate`), in the uniform-random phase
   (act + env + replay add) and in the training phase (one update per env step, as in the paper).
3. raw dm-control steps/s on the same task (`suite.load`, uniform random actions), and through `envs.dmc.DMCEnv`;
   and the median time of one `DMCEnv` step alone against right after an update (cold caches).
Loop overhead: raw env steps/s over random-phase loop steps/s, and the training-phase time per env step minus
(raw env time + update time).
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault("MUJOCO_GL", "disable")

import jax
import numpy as np
from absl import app, flags, logging

from benchmarks.tools.profiling import compiled_flops, op_kind_report, op_kind_times
from configs.rl import get_config
from envs.dmc import DMCEnv, parse_task_name
from jaxrep.experiments.rl import make_agent, train_and_evaluate
from jaxrep.rl import replay
from jaxrep.run.logging import read_metrics

_TASK = flags.DEFINE_string("task", "cheetah-run", "dm-control task.")
_BATCH = flags.DEFINE_integer("batch_size", 256, "Batch size of the update benchmark.")
_FUSED = flags.DEFINE_integer("fused", 10, "Updates per call in the fused measurement.")
_SECONDS = flags.DEFINE_float("seconds", 10.0, "Approximate wall time per update measurement.")
_LOOP_STEPS = flags.DEFINE_integer("loop_steps", 3000, "Env steps of the training-phase loop measurement.")
_PROFILE = flags.DEFINE_bool("profile", False, "Only trace the BEER update (1 per call): time per kind of XLA op.")


def update_inputs(task: str, method: str, batch_size: int):
    """(jitted `train` donating the state, fresh state, 10k-transition buffer of random data) at the task's sizes
    and paper settings."""
    config = get_config(task)
    config.method, config.batch_size = method, batch_size
    env = DMCEnv(task)
    agent = make_agent(config, env.action_size)
    state = agent.init(jax.random.PRNGKey(0), env.observation_size, env.action_size)
    count = 10_000
    rng = np.random.default_rng(0)
    data = replay.Transitions(
        observation=rng.normal(size=(count, env.observation_size)).astype(np.float32),
        action=rng.uniform(-1, 1, (count, env.action_size)).astype(np.float32),
        reward=rng.uniform(0, 1, count).astype(np.float32),
        not_done=np.ones(count, np.float32),
        next_observation=rng.normal(size=(count, env.observation_size)).astype(np.float32))
    buffer = replay.add(replay.init_replay(count, env.observation_size, env.action_size), data)
    return jax.jit(agent.train, static_argnames="num_updates", donate_argnums=0), state, buffer


def update_flops(task: str, method: str, batch_size: int) -> float | None:
    """FLOPs of one update (sampling included) by XLA's cost analysis of the compiled `train` call."""
    train, state, buffer = update_inputs(task, method, batch_size)
    return compiled_flops(train.lower(state, buffer, num_updates=1).compile())


def updates_per_second(task: str, method: str, batch_size: int, num_updates: int, seconds: float) -> float:
    train, state, buffer = update_inputs(task, method, batch_size)
    state, _ = train(state, buffer, num_updates=num_updates)  # compile
    jax.block_until_ready(state)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        state, metrics = train(state, buffer, num_updates=num_updates)
        calls += 1
    jax.block_until_ready((state, metrics))
    return calls * num_updates / (time.perf_counter() - start)


def update_op_kinds(task: str, method: str, batch_size: int, calls: int = 200) -> str:
    """Where one update's time goes, per kind of XLA op (a `jax.profiler` trace of `calls` updates)."""
    train, state, buffer = update_inputs(task, method, batch_size)

    def one_update():
        nonlocal state
        state, metrics = train(state, buffer, num_updates=1)
        jax.block_until_ready(metrics)

    one_update()
    start = time.perf_counter()
    for _ in range(calls):
        one_update()
    seconds = (time.perf_counter() - start) / calls
    return (f"{method.upper()} update, 1 per call: {1e3 * seconds:.2f} ms untraced ({1 / seconds:.0f} updates/s); "
            f"time per kind of XLA op over {calls} traced calls (concurrent ops each count in full):\n"
            + op_kind_report(op_kind_times(one_update, calls=calls)))


def env_step_ms_alone_and_after_updates(task: str, steps: int = 1000) -> tuple[float, float]:
    """Median ms of one `DMCEnv.step` (random actions) alone, and right after a BEER update on the same core.

    The host loop alternates the two; the update's working set evicts the env's from the core's caches.
    """
    train, state, buffer = update_inputs(task, "beer", 256)
    state, metrics = train(state, buffer, num_updates=1)
    env, rng = DMCEnv(task), np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps, env.action_size)).astype(np.float32)
    medians = []
    for with_update in (False, True):
        env.reset(0)
        times = []
        for action in actions:
            if with_update:
                state, metrics = train(state, buffer, num_updates=1)
                jax.block_until_ready(metrics)
            start = time.perf_counter()
            step = env.step(action)
            times.append(time.perf_counter() - start)
            if step.terminated or step.truncated:
                env.reset(0)
        medians.append(1e3 * float(np.median(times)))
    return medians[0], medians[1]


def raw_env_steps_per_second(task: str, steps: int = 20_000) -> tuple[float, float]:
    """(dm-control suite env, envs.dmc.DMCEnv) steps/s with uniform random actions, resets included."""
    from dm_control import suite

    rng = np.random.default_rng(0)
    env = suite.load(*parse_task_name(task), task_kwargs={"random": 0})
    spec = env.action_spec()
    actions = rng.uniform(spec.minimum, spec.maximum, (steps,) + spec.shape)
    env.reset()
    start = time.perf_counter()
    for action in actions:
        if env.step(action).last():
            env.reset()
    raw = steps / (time.perf_counter() - start)

    wrapped = DMCEnv(task)
    actions = actions.astype(np.float32)
    wrapped.reset(0)
    start = time.perf_counter()
    for action in actions:
        step = wrapped.step(action)
        if step.terminated or step.truncated:
            wrapped.reset(0)
    return raw, steps / (time.perf_counter() - start)


def loop_steps_per_second(task: str, loop_steps: int) -> tuple[float, float]:
    """(random-phase, training-phase) env steps/s of `train_and_evaluate` at the paper's settings (UTD 1)."""
    config = get_config(task)
    start_steps = 2_000
    config.start_steps = start_steps
    config.total_env_steps = start_steps + loop_steps
    config.log_every = 500
    config.eval_every = 10 * config.total_env_steps  # no evaluation inside the measurement
    config.checkpoint_every = 10 * config.total_env_steps  # only the final save
    config.replay_capacity = config.total_env_steps
    with tempfile.TemporaryDirectory() as workdir:
        train_and_evaluate(config, workdir)
        windows = [(r["step"], r["perf/env_steps_per_s"]) for r in read_metrics(workdir) if "perf/env_steps_per_s" in r]
    # Skip the first window of each phase (it holds the compilation of act / of train).
    random_phase = [rate for step, rate in windows if 500 < step <= start_steps]
    training_phase = [rate for step, rate in windows if step > start_steps + 500]
    harmonic = lambda rates: len(rates) / np.sum(1.0 / np.asarray(rates))
    return harmonic(random_phase), harmonic(training_phase)


def measure(task: str, batch_size: int = 256, fused: int = 10, seconds: float = 10.0,
            loop_steps: int = 3000) -> dict:
    results = {"task": task, "batch_size": batch_size, "fused": fused, "device": str(jax.devices()[0].platform)}
    for method in ("ddpg", "beer"):
        results[f"{method}_updates_per_s"] = updates_per_second(task, method, batch_size, 1, seconds)
        results[f"{method}_fused_updates_per_s"] = updates_per_second(task, method, batch_size, fused, seconds)
    results["raw_env_steps_per_s"], results["wrapped_env_steps_per_s"] = raw_env_steps_per_second(task)
    results["env_step_ms_alone"], results["env_step_ms_after_update"] = env_step_ms_alone_and_after_updates(task)
    results["loop_random_phase_steps_per_s"], results["loop_training_steps_per_s"] = loop_steps_per_second(
        task, loop_steps)
    results["loop_overhead_ratio_random_phase"] = results["raw_env_steps_per_s"] / results["loop_random_phase_steps_per_s"]
    per_step = 1.0 / results["loop_training_steps_per_s"]
    results["training_step_overhead_ms"] = 1e3 * (
        per_step - 1.0 / results["raw_env_steps_per_s"] - 1.0 / results["beer_updates_per_s"])
    return results


def markdown(results: dict) -> str:
    r = results
    return "\n".join([
        f"Task `{r['task']}`, batch {r['batch_size']}, 256-256 networks, device: {r['device']}.",
        "",
        "| measurement | figure |",
        "|---|---|",
        f"| DDPG jitted update, 1 per call (sampling included) | {r['ddpg_updates_per_s']:.0f} updates/s |",
        f"| DDPG, {r['fused']} updates fused by `lax.scan` per call | {r['ddpg_fused_updates_per_s']:.0f} updates/s |",
        f"| BEER-DDPG jitted update, 1 per call | {r['beer_updates_per_s']:.0f} updates/s |",
        f"| BEER-DDPG, {r['fused']} fused per call | {r['beer_fused_updates_per_s']:.0f} updates/s |",
        f"| raw dm-control (`suite.load`, random actions) | {r['raw_env_steps_per_s']:.0f} env steps/s |",
        f"| `envs.dmc.DMCEnv` (flattening, scaling, time limit) | {r['wrapped_env_steps_per_s']:.0f} env steps/s |",
        f"| one `DMCEnv` step alone / right after a BEER update (median) | {r['env_step_ms_alone']:.3f} ms / "
        f"{r['env_step_ms_after_update']:.3f} ms |",
        f"| training loop, uniform-random phase (act + env + replay add) | {r['loop_random_phase_steps_per_s']:.0f} env steps/s |",
        f"| training loop, training phase (BEER, 1 update per env step) | {r['loop_training_steps_per_s']:.0f} env steps/s |",
        f"| loop overhead ratio, random phase (raw env / loop) | {r['loop_overhead_ratio_random_phase']:.1f}x |",
        f"| training-phase host overhead per env step (loop - env - update) | {r['training_step_overhead_ms']:.2f} ms |",
    ])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if _PROFILE.value:
        print(update_op_kinds(_TASK.value, "beer", _BATCH.value))
        return
    results = measure(_TASK.value, _BATCH.value, _FUSED.value, _SECONDS.value, _LOOP_STEPS.value)
    for name, value in results.items():
        print(f"{name}: {value:.2f}" if isinstance(value, float) else f"{name}: {value}")
    print()
    print(markdown(results))


if __name__ == "__main__":
    app.run(main)

"""The one host training loop every gradient-trained entrypoint runs through (diffusion, VAE, traversal,
encoder, eval net), the run control every loop shares (`RunControl`: the RL loops step environments between
their updates and use it too), and the experiment-building pieces they share.

An entrypoint builds its experiment (model, pure step, data, hooks) and calls `fit` (or `fit_in_workdir`,
which adds config.json, `metrics.jsonl` and the config's schedule). The loop owns step dispatch, logging,
the progress bar, hooks, checkpoint cadence, preemption and non-finite handling:

- a `jax.jit` step is compiled ahead of time on the first batch and its memory analysis printed;
- every `log_every` steps and at the end the metrics, learning rate and samples/s go to the logger;
- every `checkpoint_every` steps, at the end and on SIGTERM the state is saved with the input pipeline's
  position in `extra["data"]`; a preempted run saves the same step on every process (`PreemptionGuard`),
  prints `SIGTERM: saved step N` and returns with preempted=True; a SIGTERM during compilation, or earlier under
  an outer guard (`train.cli.run_main(preemptible=True)`), saves the starting step unless it is already saved.
  Without a checkpointer there is nothing to save: under an outer guard (a prerequisite stage) a SIGTERM stops
  the loop at the next step and it returns with preempted=True, otherwise SIGTERM keeps its default action;
- a failed background save raises `CheckpointSaveError` within a step of its failure (`Checkpointer.poll`);
- a step's `finite` metric is checked after the next step has been dispatched (keeping the device busy), and
  always before a save: a non-finite step raises `NonFiniteLossError` and nothing after it is saved;
- hooks (`Hook`) run on their cadence after the step's save is dispatched, and once at the end.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Sequence

import jax

from jaxrep import parallel
from jaxrep.run.checkpoint import Checkpointer, PreemptionGuard, abstract_like
from jaxrep.run.logging import MetricLogger, progress_bar, save_config
from jaxrep.training import NonFiniteLossError, check_finite, current_learning_rate


@dataclasses.dataclass
class Experiment:
    """Everything built from a config before training (tests drive the same pieces as the entrypoint); each
    family's Experiment adds its model and data."""

    config: Any
    mesh: jax.sharding.Mesh
    state: Any  # initial TrainState, replicated on the mesh
    train_step: Callable  # pure step(state, batch) -> (state, metrics), for jit or shard_map
    jitted_step: Callable  # `jit_train_step(train_step, ...)`: shardings set, state donated


@dataclasses.dataclass(frozen=True)
class Hook:
    """fn(state, step) -> metrics to log at `step`, or None; called every `every` steps (0: never) and once
    when a run ends without preemption (also a run that had no step left to train)."""

    fn: Callable[[Any, int], dict | None]
    every: int = 0


@dataclasses.dataclass
class FitResult:
    state: Any
    preempted: bool
    metrics: dict  # what the hooks returned at the end
    seconds: float  # wall-clock of the steps, compilation included


class RunControl:
    """What every training loop shares, whatever one of its steps is (a gradient step, an env step, an MJX chunk):
    the progress bar, SIGTERM (every process stops at the same step), the checkpoint cadence, no non-finite state
    in a checkpoint, and the cleanup of all of these however the loop ends.

        with RunControl(checkpointer, every, total=T, initial=step, desc="train", closing=(logger,)) as run:
            run.start_progress()
            while step < T:
                ...; step += 1; run.bar.update(1)
                stop = run.should_stop(step)
                if run.save_due(step, T, stop):
                    run.save(step, state, extra, finite=all_finite(state.params), force=stop)
                if stop:
                    break

    Without a checkpointer nothing is saved, and SIGTERM stops the loop only under an outer `PreemptionGuard` (the
    caller then discards the unfinished state); with neither it keeps its default action. On exit, also by an exception,
    the bar closes and so does everything in `closing` (e.g. the checkpointer, which waits for its last save, and
    the metric logger).
    """

    def __init__(self, checkpointer: Checkpointer | None, checkpoint_every: int, *, total: int, initial: int,
                 desc: str, show_progress: bool = True, unit: str = "step", closing: Sequence[Any] = ()):
        self.checkpointer, self.checkpoint_every = checkpointer, checkpoint_every
        self._bar_options = dict(total=total, initial=initial, desc=desc, show=show_progress, unit=unit)
        self._closing = closing
        self._guard = PreemptionGuard() if checkpointer is not None or PreemptionGuard.active() else None
        self.bar = None

    def __enter__(self) -> "RunControl":
        if self._guard is not None:
            self._guard.__enter__()
        return self

    def start_progress(self) -> None:
        """Shows the progress bar (after compiling, so the compiled step's memory line stands on its own)."""
        self.bar = progress_bar(**self._bar_options)

    def should_stop(self, step: int) -> bool:
        """Whether a SIGTERM asks the loop to save `step` and return (the same answer on every process)."""
        return self._guard is not None and self._guard.should_stop(step)

    def save_due(self, step: int, total: int, stop: bool) -> bool:
        return self.checkpointer is not None and (step % self.checkpoint_every == 0 or step >= total or stop)

    def save(self, step: int, state: Any, extra: Any, *, finite: Any = True, force: bool = False) -> None:
        """Saves `step` unless `finite` (a host or device boolean) is false: then `NonFiniteLossError`, and the
        last good checkpoint stays the latest."""
        if not bool(finite):
            raise NonFiniteLossError(f"non-finite parameters at step {step}; stopping without saving, the last good "
                                     "checkpoint is kept")
        self.checkpointer.save(step, state, extra, force=force)

    def __exit__(self, *exc) -> None:
        try:
            if self.bar is not None:
                self.bar.close()
            for resource in self._closing:
                resource.close()
        finally:
            if self._guard is not None:
                self._guard.__exit__(*exc)


def select_devices(config, devices=None) -> list:
    """`devices`, else the first `config.num_devices` devices (0: all)."""
    return devices or (jax.devices()[:config.num_devices] if config.num_devices else jax.devices())


def jit_train_step(train_step: Callable, state: Any, mesh: jax.sharding.Mesh) -> Callable:
    """jax.jit of step(state, batch) -> (state, metrics): the state keeps its own shardings (replicated, or
    FSDP-split by `parallel.state_shardings`) and is donated, the batch is split over `data`."""
    state_sharding = parallel.shardings_of(state)
    return jax.jit(train_step, in_shardings=(state_sharding, parallel.batch_sharding(mesh)),
                   out_shardings=(state_sharding, parallel.replicated_sharding(mesh)), donate_argnums=0)


def describe_compiled(compiled, step_time_hint: str = "") -> str:
    """One-line memory analysis of a compiled step (lets a pod user see an OOM before training)."""
    memory = compiled.memory_analysis()
    if memory is None:
        return "memory analysis unavailable on this backend"
    mib = lambda n: f"{n / 2**20:.1f} MiB"
    return (f"compiled step memory per device: arguments {mib(memory.argument_size_in_bytes)}, "
            f"outputs {mib(memory.output_size_in_bytes)}, temporaries {mib(memory.temp_size_in_bytes)}, "
            f"code {mib(memory.generated_code_size_in_bytes)}{step_time_hint}")


def resume(config, workdir: str, state: Any, start: tuple[Any, dict] | None = None
           ) -> tuple[Checkpointer, Any, dict]:
    """(checkpointer of `workdir/checkpoints`, state, extras): the latest checkpoint's, else `start` =
    (state, extras) when given, else (`state`, {})."""
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), save_every=config.checkpoint_every,
                                keep=config.keep_checkpoints)
    if checkpointer.latest_step() is not None:
        state, extra = checkpointer.restore(abstract_like(state))
        print(f"restored step {int(state.step)} from {checkpointer.directory}", flush=True)
        return checkpointer, state, extra
    return (checkpointer, *start) if start is not None else (checkpointer, state, {})


def _compile(step_fn: Callable, state: Any, batch: Any) -> Callable:
    if not hasattr(step_fn, "lower"):  # a plain Python callable runs as given, without an ahead-of-time compile
        return step_fn
    start = time.perf_counter()
    compiled = step_fn.lower(state, batch).compile()
    print(describe_compiled(compiled, f"; compile {time.perf_counter() - start:.1f} s"), flush=True)
    return compiled


def _run_hooks(hooks: Sequence[Hook], state: Any, step: int, logger: MetricLogger, *, end: bool) -> dict:
    metrics = {}
    for hook in hooks:
        if end or (hook.every and step % hook.every == 0):
            metrics.update(hook.fn(state, step) or {})
    if metrics:
        logger.log(step, metrics)
    return metrics


def fit(state: Any, step_fn: Callable, next_batch: Callable[[int], Any], *, total_steps: int,
        logger: MetricLogger, log_every: int, batch_size: int, checkpointer: Checkpointer | None = None,
        checkpoint_every: int = 0, data_state: Callable[[], Any] = dict, hooks: Sequence[Hook] = (),
        desc: str = "train", show_progress: bool = True, progress_metrics: Sequence[str] = ("loss",)) -> FitResult:
    """Runs `step_fn` from `state.step` to `total_steps` (module docstring).

    Args:
      state: a TrainState (restored or fresh).
      step_fn: step(state, batch) -> (state, metrics) with `make_train_step`'s metrics; jitted (compiled here on
        the first batch), compiled, or a plain Python callable.
      next_batch: next_batch(step) -> the global batch of step `step` + 1 (the iterator advances on call).
      data_state: the input pipeline's state after the batches consumed so far (saved as `extra["data"]`).
      checkpointer: where to save; None saves nothing (the caller keeps the result).
      progress_metrics: the logged metrics the progress display shows (e.g. a loss's terms rather than their sum).
    """
    step = int(state.step)
    started = time.perf_counter()
    if step >= total_steps:
        return FitResult(state, False, _run_hooks(hooks, state, step, logger, end=True), 0.0)
    saving = checkpointer is not None
    with RunControl(checkpointer, checkpoint_every, total=total_steps, initial=step, desc=desc,
                    show_progress=show_progress) as run:
        batch, pending = next_batch(step), None
        step_fn = _compile(step_fn, state, batch)
        if run.should_stop(step):  # SIGTERM while building or compiling
            if saving:
                if checkpointer.latest_step() != step:
                    checkpointer.save(step, state, {"data": data_state()}, force=True)
                checkpointer.wait()
            print(f"SIGTERM before training: {_kept(saving, step)}, exiting", flush=True)
            return FitResult(state, True, {}, time.perf_counter() - started)
        run.start_progress()
        last_log, last_log_step = time.perf_counter(), step
        while step < total_steps:
            state, metrics = step_fn(state, batch)
            step += 1
            stop = run.should_stop(step)  # every step, on every process
            if saving:
                checkpointer.poll()  # a failed background save is reported now, not at the next save
            # Check the previous step's metrics after dispatching this one, keeping the device busy.
            if pending is not None:
                check_finite(pending)
            pending = metrics
            run.bar.update(1)
            if step % log_every == 0 or step == total_steps:
                now = time.perf_counter()
                metrics = jax.device_get(metrics)
                check_finite(metrics)
                speed = batch_size * (step - last_log_step) / (now - last_log)
                scalars = logger.log(step, dict(metrics, learning_rate=current_learning_rate(state.opt_state),
                                                samples_per_s=speed))
                run.bar.set_postfix(**{name: f"{scalars[name]:.4f}" for name in progress_metrics if name in scalars},
                                    samples_s=f"{speed:.0f}")
                last_log, last_log_step = now, step
            if saving and (step % checkpoint_every == 0 or stop):
                check_finite(jax.device_get(metrics))
                # data_state(): the position after every batch consumed so far
                run.save(step, state, {"data": data_state()}, force=stop)
            if step < total_steps:  # the end hooks cover the last step
                _run_hooks(hooks, state, step, logger, end=False)
            if stop:
                if saving:
                    checkpointer.wait()
                print(f"SIGTERM: {_kept(saving, step)}, exiting", flush=True)
                return FitResult(state, True, {}, time.perf_counter() - started)
            if step < total_steps:
                batch = next_batch(step)
        check_finite(jax.device_get(pending))
        if saving:
            if checkpointer.latest_step() != step:
                run.save(step, state, {"data": data_state()}, force=True)
            checkpointer.wait()
    seconds = time.perf_counter() - started
    return FitResult(state, False, _run_hooks(hooks, state, step, logger, end=True), seconds)


def _kept(saving: bool, step: int) -> str:
    return f"saved step {step}" if saving else f"stopped at step {step}, nothing saved"


def fit_in_workdir(config, workdir: str, state: Any, step_fn: Callable, next_batch: Callable[[int], Any], *,
                   checkpointer: Checkpointer | None, total_steps: int | None = None, tensorboard: bool = True,
                   **options) -> FitResult:
    """Writes `workdir/config.json` and runs `fit` on the config's schedule (total_steps unless given,
    log_every, checkpoint_every, batch_size), logging to `workdir`; closes the logger and `checkpointer`.
    `options`: fit's data_state, hooks, desc, show_progress, progress_metrics."""
    save_config(workdir, config)
    logger = MetricLogger(workdir, tensorboard=tensorboard, config=config)
    try:
        return fit(state, step_fn, next_batch, total_steps=config.total_steps if total_steps is None else total_steps,
                   logger=logger, log_every=config.log_every, batch_size=config.batch_size,
                   checkpointer=checkpointer, checkpoint_every=config.get("checkpoint_every", 0), **options)
    finally:
        logger.close()
        if checkpointer is not None:
            checkpointer.close()


def final_evaluation(evaluate_fn: Callable[[Any, int], dict[str, float]]) -> Hook:
    """The end hook of evaluate_fn(EMA params, step) -> metrics: logged as `eval/<name>` and printed."""

    def hook(state, step):
        metrics = evaluate_fn(state.ema_params, step)
        print("final: " + ", ".join(f"{name} {value:.4f}" for name, value in metrics.items()), flush=True)
        return {f"eval/{name}": value for name, value in metrics.items()}

    return Hook(hook)

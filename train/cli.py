"""Command-line helpers shared by the `train.*` entrypoints (flags are defined by each entrypoint, only
under `if __name__ == "__main__":` through `run_program`, so importing an entrypoint defines none).

Expected failures end in one line on stderr and exit status 1: `config error: FIELD: ...` for a bad
config (an unknown preset included), `error: ...` for a run that cannot go on (non-finite loss, a
checkpoint that does not match the model, processes that do not form their cluster).

Multi-process runs: an entrypoint whose config has a `distributed` sub-config (those of `SCALES_OUT`) starts
`jax.distributed` in `run_main` before anything else touches JAX; the others refuse `--config.distributed.*`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from typing import Any, Callable

from absl import app, flags, logging
from ml_collections import config_flags

from jaxrep import files
from jaxrep.config_checks import ConfigError
from jaxrep.experiments.prerequisites import run_missing
from jaxrep.run.checkpoint import CheckpointMismatchError, CheckpointSaveError, DamagedCheckpointError, PreemptionGuard
from jaxrep.run.distributed import ClusterError, initialize_from_config
from jaxrep.run.logging import is_main_process, workdir_summary
from jaxrep.run.workdir_lock import WorkdirLockedError
from jaxrep.training import NonFiniteLossError
from jaxrep.weights.convert import WeightFileError

# The entrypoints with a `distributed` sub-config: they run on every device of several processes.
SCALES_OUT = ("train.diffusion", "train.evaluate", "train.prepare_latents", "train.sample")
# What a newcomer runs after each entrypoint ({workdir}: the one just used; RUN: a new work directory).
NEXT_COMMANDS = {
    "train.diffusion": "python -m train.evaluate --config=configs/evaluate.py:cpu --workdir={workdir}",
    "train.sample": "python -m train.evaluate --config=configs/evaluate.py:cpu --workdir={workdir}",
    "train.import_checkpoint": "python -m train.sample --config=configs/evaluate.py:fid50k --workdir={workdir}",
    "train.prepare_latents": "python -m train.diffusion --config=configs/diffusion.py:b2_repa "
                             "--config.data.source=latent_records --config.data.path={workdir} --workdir=RUN",
    "train.encoder": "python -m train.diffusion --config=configs/diffusion.py:cpu_repa "
                     "--config.align.encoder.path={workdir} --workdir=RUN",
    "train.eval_net": "python -m train.evaluate --config=configs/evaluate.py:cpu "
                      "--config.features.eval_net_path={workdir} --workdir=RUN",
    "train.vae": "python -m train.traversal --config=configs/traversal.py:potential --config.vae.workdir={workdir} "
                 "--workdir=RUN",
}


def entrypoint_name(argv: list[str]) -> str:
    """`train.<module>` of the running program (`python -m train.<module>` puts the module's path in argv[0])."""
    return f"train.{os.path.splitext(os.path.basename(argv[0]))[0]}"


def _exit_for_unknown_field(error: Exception, argv: list[str]) -> None:
    """ml_collections' error for `--config.a.b=v` where the config has no `a.b`, as one line naming the flag."""
    path = re.search(r"lookup: ([\w.]+)", str(error))
    field = path.group(1) if path else str(error).strip("\"'")
    overrides = [arg.split("=", 1)[0] for arg in argv[1:] if re.match(rf"--\w+(\.\w+)*\.{re.escape(field)}(=|$)", arg)]
    if field == "distributed" or field.startswith("distributed."):
        flag = next(arg.split("=", 1)[0] for arg in argv[1:] if arg.startswith("--config.distributed"))
        entrypoint = entrypoint_name(argv)
        sys.exit(f"config error: {flag}: {entrypoint} runs on one process (no multi-host support); the entrypoints "
                 f"that scale out over several processes are {', '.join(SCALES_OUT)}")
    sys.exit(f"config error: {overrides[0] if overrides else field}: no such field in the config")


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, but an invalid preset or an unknown `--config.x` exits with one line, not a traceback."""
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as error:  # an override given with an explicit --config=file:preset
        _exit_for_unknown_field(error, argv)
    except flags.Error as error:
        match = re.search(r"ConfigError: (.+)", str(error))
        if match is None:
            return app.parse_flags_with_usage(argv)
        sys.exit(f"config error: {match.group(1)}")


def run_program(main: Callable[[list[str]], Any], *, config: str, workdir: str | None, workdir_help: str,
                lock_config: bool = False) -> None:
    """An entrypoint's `__main__`: defines `--config` (default `config`, "file.py:preset") and `--workdir` (required
    when `workdir` is None) next to any flags the caller defined, then `app.run(main)`.

    ml_collections applies the `--config.a.b=v` overrides while the flag is defined (or, with an explicit
    `--config=file:preset`, while flags are parsed); an override of a field the config lacks exits with one line
    naming it, not a traceback.
    """
    try:
        config_flags.DEFINE_config_file("config", config, "Config file and preset.", lock_config=lock_config)
    except (AttributeError, KeyError) as error:
        _exit_for_unknown_field(error, sys.argv)
    flags.DEFINE_string("workdir", workdir, workdir_help, required=workdir is None)
    app.run(main, flags_parser=parse_flags)


def check_storage(config: Any, workdir: str | None) -> None:
    """ConfigError naming the field (or `workdir`) whose URL (gs://...) needs a storage client not installed here."""
    if workdir:
        files.check_backend(workdir, "workdir")
    pending = [("", config)]
    while pending:
        prefix, node = pending.pop()
        for name, value in node.items():
            if hasattr(value, "items"):
                pending.append((f"{prefix}{name}.", value))
            elif isinstance(value, str):
                files.check_backend(value, f"{prefix}{name}")


def run_main(train_fn: Callable[[Any, str], Any], config: Any, workdir: str,
             expected_errors: tuple[type[Exception], ...] = (), preemptible: bool = False,
             prerequisites: Callable[[Any, str], list] | None = None) -> Any:
    """Returns train_fn(config, workdir) after printing what the run left in `workdir` (`workdir_summary`: outputs,
    last metrics, the next command); a ConfigError, a checkpoint that does not fit, is damaged or failed to
    save, a weight file that is missing, unreadable or of another model, a work directory held by another job,
    or one of `expected_errors` (e.g. the loop's non-finite-loss error) becomes one line on stderr and exit
    status 1.

    A config with a `distributed` sub-config starts `jax.distributed` first, before anything else touches JAX (the
    guard below asks for the process count); processes that do not form their cluster end in one line.

    `preemptible`: hold a `PreemptionGuard` for the whole run, so a SIGTERM while building, compiling or
    between stages is kept for the training loop (which saves and returns) instead of killing the process.

    `prerequisites(config, workdir)`: the runs `train_fn` needs (`jaxrep.experiments.prerequisites`); the missing
    ones run first, each as its own stage, and a SIGTERM during one ends the program there (exit 0).
    """
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO; keep the progress bar readable
    started = time.time()
    try:
        check_storage(config, workdir)
        if "distributed" in config:
            initialize_from_config(config.distributed)
        with PreemptionGuard() if preemptible else contextlib.nullcontext():
            ready = run_missing(prerequisites(config, workdir)) if prerequisites else True
            result = train_fn(config, workdir) if ready else None
    except ConfigError as error:
        sys.exit(f"config error: {error}")
    except (CheckpointMismatchError, CheckpointSaveError, ClusterError, DamagedCheckpointError, WeightFileError,
            WorkdirLockedError, *expected_errors) as error:
        sys.exit(f"error: {error}")
    if workdir and is_main_process():
        entrypoint = entrypoint_name(sys.argv)
        print(workdir_summary(workdir, started, title=f"{entrypoint} ended after {time.time() - started:.0f} s",
                              next_command=NEXT_COMMANDS.get(entrypoint, "").format(workdir=workdir)), flush=True)
    return result


def run_entrypoint(argv: list[str], train_fn: Callable[[Any, str], Any],
                   expected_errors: tuple[type[Exception], ...] = (), preemptible: bool = False,
                   prerequisites: Callable[[Any, str], list] | None = None) -> Any:
    """The body of an entrypoint's absl `main`: refuses positional arguments, then returns
    `run_main(train_fn, --config, --workdir, expected_errors, preemptible, prerequisites)` (the caller's `main`
    must not return it: absl exits with what `main` returns)."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    return run_main(train_fn, flags.FLAGS.config, flags.FLAGS.workdir, expected_errors, preemptible, prerequisites)


def run_rl_entrypoint(argv: list[str], train_fn: Callable[[Any, str], dict]) -> None:
    """The body of an RL entrypoint's absl `main`: `run_entrypoint` (preemptible), then a one-line summary."""
    summary = run_entrypoint(argv, train_fn, expected_errors=(NonFiniteLossError,), preemptible=True)
    print(f"done: {summary['env_steps']} env steps, {summary['updates']} updates, final eval return "
          f"{summary['final_eval_return']:.2f}, {summary['env_steps_per_s']:.0f} env steps/s", flush=True)

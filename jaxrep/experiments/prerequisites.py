"""Prerequisite runs: the networks an experiment needs before it can be built, run as stages of their own.

An aligned diffusion run needs its target encoder (`train.encoder`), an evaluation its evaluation network
(`train.eval_net`), a traversal its frozen VAE (`train.vae`). Each experiment module declares them with a
`prerequisites(config, workdir)` function; the entrypoint runs the missing ones first (`run_missing`), each in its
own work directory with its own progress bar and a line that says so, exactly as the printed command would.
Builders never train: one that finds a prerequisite missing stops with the command that makes it.

On several processes a missing prerequisite is refused in one line: it is one host's job, to be run first.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import ml_collections

from configs._common import factor_preset_for_run
from jaxrep import files
from jaxrep.config_checks import ConfigError
from jaxrep.run.checkpoint import PreemptionGuard


@dataclasses.dataclass(frozen=True)
class Prerequisite:
    """A run another run needs.

    Attributes:
      field: the config field that points at its work directory (named in messages).
      entrypoint: the command that makes it, e.g. "train.encoder".
      preset: its config, as the command line names it ("configs/encoder.py:shapes32").
      config: that config, resolved.
      workdir: where it goes; it exists once the run is there.
      run: run(config, workdir), the experiment function of `entrypoint`.
      done: done(workdir), whether the run is there (default: `holds_a_run`).
    """

    field: str
    entrypoint: str
    preset: str
    config: ml_collections.ConfigDict
    workdir: str
    run: Callable[[ml_collections.ConfigDict, str], Any]
    done: Callable[[str], bool] = dataclasses.field(default=lambda workdir: holds_a_run(workdir))

    @property
    def command(self) -> str:
        return f"python -m {self.entrypoint} --config={self.preset} --workdir={self.workdir}"

    def missing(self) -> bool:
        return not self.done(self.workdir)


# What an interrupted run of a frozen network leaves in its work directory (the network is saved once, at the end).
INTERRUPTED_RUN_FILES = frozenset({"config.json", "metrics.jsonl", "LOCK", "tensorboard"})


def holds_a_run(path: str) -> bool:
    """Whether `path` holds more than an interrupted run leaves behind: a finished network, or anything else,
    which a prerequisite stage must not train over (an empty directory is free to use)."""
    folder = files.path(path)
    return folder.exists() and not (folder.is_dir() and {entry.name for entry in folder.iterdir()} <= INTERRUPTED_RUN_FILES)


def factor_network(field: str, entrypoint: str, config_file: str, get_config: Callable, run: Callable, data,
                   workdir: str) -> Prerequisite:
    """A network trained on a diffusion run's factor-labelled data (the in-repo target encoder, the evaluation
    network): `config_file`'s preset for `data` (`configs._common.factor_preset_for_run`)."""
    config = factor_preset_for_run(get_config, data)
    preset = f"{config_file}:{data.source}" + (f" --config.data_path={config.data_path}" if config.data_path else "")
    return Prerequisite(field, entrypoint, preset, config, workdir, run)


def run_missing(prerequisites: Sequence[Prerequisite]) -> bool:
    """Runs every missing prerequisite in order, as its own stage; returns False when a SIGTERM stopped one (the
    caller then ends without starting its own run: rerunning the same command resumes there).

    Raises:
      ConfigError: a prerequisite is missing on a multi-process run.
    """
    for prerequisite in prerequisites:
        if not prerequisite.missing():
            continue
        if jax.process_count() > 1:
            raise ConfigError(f"{prerequisite.field}: no run at {prerequisite.workdir!r}; on several hosts make it "
                              f"first, on one: {prerequisite.command}")
        print(f"stage {prerequisite.entrypoint}: {prerequisite.field}={prerequisite.workdir} does not exist yet, so "
              f"it is made first, as `{prerequisite.command}` would", flush=True)
        with PreemptionGuard() as guard:
            prerequisite.run(prerequisite.config, prerequisite.workdir)
        if guard.requested:
            return False
    return True

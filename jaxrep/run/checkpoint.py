"""Orbax checkpointing with exact resume, topology-agnostic restore and preemption saves.

A checkpoint holds two items: `state`, any pytree of arrays (train state, replay buffer, counters), and
`extra`, a JSON-serialisable dict (data-iterator state, env counters, anything host-side). Restores always
go against an abstract target built from the *current* mesh (`abstract_like`), so a run saved on 8 devices
restores on 1 (orbax #648/#683; maxdiffusion's fix).

Damage: once a save has committed, process 0 records the size and SHA-256 of each of its files in
`<step>/jaxrep_checksums.json`. Restoring the latest checkpoint verifies them first; a checkpoint that fails
(bit rot, a truncated or missing file, missing metadata, an empty step folder) is moved aside to
`damaged-<step>-<time>/` with a warning naming it, and the previous one is restored instead.

The directory may be a local path or an object-store URL (`gs://bucket/run/checkpoints`): orbax writes both, and
the checksums and the set-aside go through `jaxrep.files` (on a store, the set-aside copies and then deletes).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from jaxrep import files, parallel


def abstract_like(tree: Any) -> Any:
    """Abstract restore target for `tree`: `ShapeDtypeStruct`s carrying each leaf's current sharding."""

    def to_abstract(leaf):
        sharding = getattr(leaf, "sharding", None)
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)

    return jax.tree.map(to_abstract, tree)


def without_empty(tree: Any) -> Any:
    """`tree` with its zero-size leaves replaced by None (what orbax can save)."""
    return jax.tree.map(lambda leaf: None if np.size(leaf) == 0 else leaf, tree)


def with_empty(restored: Any, like: Any) -> Any:
    """Inverse of `without_empty`: `restored`'s leaves in the places of `like`'s non-empty leaves, `like`'s
    own zero-size leaves elsewhere."""
    leaves, treedef = jax.tree.flatten(like)
    restored_leaves = iter(jax.tree.leaves(restored))
    return jax.tree.unflatten(treedef, [leaf if np.size(leaf) == 0 else next(restored_leaves) for leaf in leaves])


class CheckpointMismatchError(ValueError):
    """A checkpoint whose arrays or tree do not match the state the current config builds."""


CHECKSUMS = "jaxrep_checksums.json"


class CheckpointSaveError(OSError):
    """An asynchronous save failed in the background; the checkpoints committed before it are intact."""


class DamagedCheckpointError(OSError):
    """A checkpoint whose files do not match the checksums recorded when it was written, or cannot be read."""


def _step_files(step_dir: str) -> dict[str, str]:
    return {rel: str(path) for rel, path in files.files_under(step_dir).items() if rel != CHECKSUMS}


def write_checksums(step_dir: str) -> None:
    """Records {relative path: [size, SHA-256]} of a committed step folder's files."""
    entries = {rel: [files.file_size(path), files.file_sha256(path)]
               for rel, path in sorted(_step_files(step_dir).items())}
    files.write_json_atomic(files.join(step_dir, CHECKSUMS), entries)


def verify_checksums(step_dir: str) -> None:
    """Raises DamagedCheckpointError naming the first file that is missing or differs; a step folder without a
    checksum record (written before the record) is only checked for being non-empty."""
    record = files.path(files.join(step_dir, CHECKSUMS))
    if not record.is_file():
        if not files.path(step_dir).is_dir() or not _step_files(step_dir):
            raise DamagedCheckpointError(f"{step_dir}: empty checkpoint folder")
        return
    try:
        entries = json.loads(record.read_text())
    except ValueError as error:
        raise DamagedCheckpointError(f"{record}: unreadable checksum record ({error})") from None
    for rel, (size, digest) in entries.items():
        path = files.join(step_dir, rel)
        if not files.path(path).is_file():
            raise DamagedCheckpointError(f"{path}: missing")
        if files.file_size(path) != size or files.file_sha256(path) != digest:
            raise DamagedCheckpointError(f"{path}: size or SHA-256 differs from the record (damaged)")


class Checkpointer:
    """`CheckpointManager` wrapper: save every `save_every` steps, keep the latest `keep`.

    Saves are asynchronous; `wait()` blocks until the last one is committed, `poll()` (no waiting) notices
    as soon as it has ended; either raises `CheckpointSaveError` if it failed. Orbax writes to a temporary
    directory and renames on commit, so a process killed mid-save leaves the previous checkpoint intact.
    """

    def __init__(self, directory: str | os.PathLike, *, save_every: int, keep: int = 3,
                 async_save: bool = True):
        self.directory = str(files.path(directory))
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                save_interval_steps=save_every,
                max_to_keep=keep,
                enable_async_checkpointing=async_save,
                create=True,
            ),
            item_names=("state", "extra"),
        )
        self._unconfirmed: int | None = None  # the step of a started save not yet seen committed

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def _step_dir(self, step: int) -> str:
        return files.join(self.directory, str(step))

    def _record_checksums(self) -> None:
        """Checksums of every committed step that has none yet (process 0; call when no save is in flight)."""
        if jax.process_index() != 0:
            return
        for step in self.all_steps():
            if not files.path(files.join(self._step_dir(step), CHECKSUMS)).is_file():
                write_checksums(self._step_dir(step))

    def save(self, step: int, state: Any, extra: dict | None = None, *, force: bool = False) -> bool:
        """Saves if `step` is on the save interval (or `force`); returns whether a save started."""
        if not (force or self._manager.should_save(step)):
            return False
        self.wait()  # the previous save has committed: record its checksums
        started = self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(extra or {})
            ),
            force=force,
        )
        if started:
            self._unconfirmed = step
        return started

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores `step` against `abstract_state` (see `abstract_like`); by default the latest checkpoint that
        is not damaged (module docstring). A named `step` that is damaged raises DamagedCheckpointError."""
        if step is not None:
            verify_checksums(self._step_dir(step))
            return self._restore_step(abstract_state, step)
        for candidate in sorted(self.all_steps(), reverse=True):
            try:
                verify_checksums(self._step_dir(candidate))
                return self._restore_step(abstract_state, candidate)
            except (DamagedCheckpointError, OSError) as error:
                self._set_aside(candidate, error)
        raise FileNotFoundError(f"no usable checkpoint in {self.directory}")

    def _set_aside(self, step: int, error: Exception) -> None:
        """Moves a damaged step folder out of orbax's sight (so the step can be saved again) and warns."""
        target = files.join(self.directory, f"damaged-{step}-{int(time.time())}")
        print(f"warning: checkpoint {step} in {self.directory} is damaged ({str(error).splitlines()[0]}); moved to "
              f"{target}, restoring the previous one", file=sys.stderr, flush=True)
        if jax.process_index() == 0:
            files.move_tree(self._step_dir(step), target)
        parallel.barrier(f"jaxrep_checkpoint_set_aside_{step}")
        self._manager.reload()

    def _restore_step(self, abstract_state: Any, step: int) -> tuple[Any, dict]:
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), extra=ocp.args.JsonRestore()
                ),
            )
        except ValueError as error:  # shape/structure mismatch: the run's config changed
            raise CheckpointMismatchError(
                f"checkpoint {step} in {self.directory} does not fit the current model/config "
                f"(use a new work directory or the config it was written with): {str(error).splitlines()[0]}"
            ) from error
        return restored["state"], dict(restored["extra"] or {})

    def poll(self) -> None:
        """Without waiting: once the last save has ended, records its checksums, or raises CheckpointSaveError
        if it failed (the loop calls this every step, so a failure is reported at once)."""
        if self._unconfirmed is not None and not self._manager.is_saving_in_progress():
            self.wait()

    def wait(self) -> None:
        """Blocks until the last save has committed and records its checksums; CheckpointSaveError if it failed."""
        try:
            self._manager.wait_until_finished()
        except Exception as error:  # noqa: BLE001 - orbax re-raises whatever the background save raised
            step, self._unconfirmed = self._unconfirmed, None
            raise CheckpointSaveError(
                f"saving checkpoint {step} to {self.directory} failed in the background: "
                f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}; the committed "
                f"checkpoints {self.all_steps()} are intact") from error
        self._unconfirmed = None
        self._record_checksums()

    def close(self) -> None:
        self.wait()
        self._manager.close()


class PreemptionGuard:
    """Context manager that turns SIGTERM into a stop step the training loop polls between steps.

    The loop saves a checkpoint and exits 0 when `should_stop(step)` is true, so a preempted job (SLURM, TPU
    maintenance, Kubernetes) loses no work. One process: a Python SIGTERM handler sets a flag (`requested`),
    and the previous handler is restored on exit. Several processes (`jax.process_count() > 1`): a SIGTERM
    may reach only some of them, yet all must save the same step (the save is collective), so no Python
    handler is installed (it would replace the C++ SIGTERM notifier that `jax.distributed.initialize` sets
    up) and `should_stop` asks JAX's preemption sync point, which agrees on max(last step seen by any
    process) + 1. It must then be called with every step, increasing, by every process; a call is a local
    mutex and integer compare (no communication) until a notice arrives.

    Guards nest: an inner guard shares the flag of the outermost active one, so an entrypoint that holds a
    guard around building and compiling (`train.cli.run_main(preemptible=True)`) hands a SIGTERM that came
    before training, or between ERW's stages, to the training loop, which then saves and exits 0.
    """

    _outermost: "PreemptionGuard | None" = None

    def __init__(self):
        self._event = threading.Event()
        self._previous = None
        self._is_outermost = False

    @classmethod
    def active(cls) -> bool:
        """Whether a guard is held (an inner one then shares its flag)."""
        return cls._outermost is not None

    @property
    def requested(self) -> bool:
        """This process's flag: set by its SIGTERM (one process) or once `should_stop` returned true."""
        return self._event.is_set()

    def should_stop(self, step: int) -> bool:
        """Whether the loop should save `step` and exit; the same answer on every process for the same step."""
        if jax.process_count() > 1 and multihost_utils.reached_preemption_sync_point(step):
            self._event.set()
        return self._event.is_set()

    def __enter__(self) -> "PreemptionGuard":
        if PreemptionGuard._outermost is not None:
            self._event = PreemptionGuard._outermost._event
            return self
        PreemptionGuard._outermost, self._is_outermost = self, True
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, lambda *_: self._event.set())
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
        if self._is_outermost:
            PreemptionGuard._outermost, self._is_outermost = None, False

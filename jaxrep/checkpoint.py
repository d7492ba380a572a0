"""Orbax checkpointing with exact resume, topology-agnostic restore and preemption saves.

A checkpoint holds two items: `state`, any pytree of arrays (train state, replay buffer, counters), and
`extra`, a JSON-serialisable dict (data-iterator state, env counters, anything host-side). Restores always
go against an abstract target built from the *current* mesh (`abstract_like`), so a run saved on 8 devices
restores on 1 (orbax #648/#683; maxdiffusion's fix).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


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


class Checkpointer:
    """`CheckpointManager` wrapper: save every `save_every` steps, keep the latest `keep`.

    Saves are asynchronous; `wait()` blocks until the last one is committed. Orbax writes to a temporary
    directory and renames on commit, so a process killed mid-save leaves the previous checkpoint intact.
    """

    def __init__(self, directory: str | os.PathLike, *, save_every: int, keep: int = 3,
                 async_save: bool = True):
        self.directory = os.path.abspath(os.fspath(directory))
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

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, extra: dict | None = None, *, force: bool = False) -> bool:
        """Saves if `step` is on the save interval (or `force`); returns whether a save started."""
        return self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(extra or {})
            ),
            force=force,
        )

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores `step` (default: latest) against `abstract_state` (see `abstract_like`)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
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

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


class PreemptionGuard:
    """Context manager that turns SIGTERM into a flag the training loop polls between steps.

    The loop saves a checkpoint and exits 0 when `requested` is set, so a preempted job (SLURM, TPU
    maintenance, Kubernetes) loses no work. The previous handler is restored on exit.
    """

    def __init__(self):
        self._event = threading.Event()
        self._previous = None

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def __enter__(self) -> "PreemptionGuard":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, lambda *_: self._event.set())
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

"""One job per work directory: a lock file holding the host and PID of the job that owns the directory.

Process 0 of a job creates `<workdir>/LOCK` exclusively and removes it on exit; every other process learns the
outcome through a broadcast, so all processes of a refused multi-process job stop with the same message. A lock
left by a dead process on this host (its PID no longer runs) is stale and taken over; a lock from another host
cannot be checked from here, so the refusal says how to remove it by hand.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import socket
import time

import jax

LOCK_FILE = "LOCK"


class WorkdirLockedError(RuntimeError):
    """Another job holds the work directory."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # running, under another user
        return True
    return True


def _try_lock(path: str) -> str | None:
    """Creates the lock; returns None on success, else why it is held."""
    record = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except OSError as error:
            if error.errno != errno.EEXIST:
                raise
            try:
                with open(path) as file:
                    holder = json.load(file)
            except (OSError, ValueError):
                holder = {}
            if holder.get("host") == record["host"] and not _alive(int(holder.get("pid", -1))):
                os.remove(path)  # stale: left by a process of this host that no longer runs
                continue
            return (f"held by pid {holder.get('pid', '?')} on {holder.get('host', '?')} since "
                    f"{holder.get('since', '?')}")
        with os.fdopen(descriptor, "w") as file:
            json.dump(record, file)
        return None
    return "could not take over the stale lock"


@contextlib.contextmanager
def workdir_lock(workdir: str):
    """Holds `<workdir>/LOCK` for the duration of the block; WorkdirLockedError if another job holds it."""
    path = os.path.join(workdir, LOCK_FILE)
    refusal = None
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        refusal = _try_lock(path)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        refused = bool(multihost_utils.broadcast_one_to_all(refusal is not None))
        refusal = refusal or ("held by another job" if refused else None)
    if refusal is not None:
        raise WorkdirLockedError(f"workdir: {workdir!r} is in use ({refusal}); wait for that job, use another "
                                 f"work directory, or delete {path} if that job is gone")
    try:
        yield
    finally:
        if jax.process_index() == 0:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def locks_workdir(train_fn):
    """Decorator for `train_fn(config, workdir, ...)`: runs it holding `workdir_lock(workdir)`."""

    @functools.wraps(train_fn)
    def locked(config, workdir: str, *args, **kwargs):
        with workdir_lock(workdir):
            return train_fn(config, workdir, *args, **kwargs)

    return locked

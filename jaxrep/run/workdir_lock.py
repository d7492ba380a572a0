"""One job per work directory: a lock file holding the host and PID of the job that owns the directory.

Process 0 of a job creates `<workdir>/LOCK` only if it does not exist, and removes it on exit; every other process
learns the outcome through a broadcast, so all processes of a refused multi-process job stop with the same
message. A lock left by a dead process on this host (its PID no longer runs) is stale and taken over; a lock from
another host cannot be checked from here, so the refusal says how to remove it.

What makes the create exclusive, by kind of storage (`jaxrep.files`):
- a local disk: `open(O_CREAT | O_EXCL)`;
- Cloud Storage (`gs://`): an upload conditioned on the object not existing (`ifGenerationMatch=0`); the stale
  lock is deleted, and our own lock released, only at the generation that was read, so a lock another job took in
  between is never removed;
- any other scheme has no such create here: the run is refused in one line (use a local path or gs://).
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

from jaxrep import files
from jaxrep.config_checks import ConfigError

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


class _LocalLockFile:
    def __init__(self, path: str):
        self.path = path

    def create(self, text: str) -> bool:
        try:
            descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except OSError as error:
            if error.errno != errno.EEXIST:
                raise
            return False
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        return True

    def read(self) -> tuple[str, None]:
        """(its text, its generation: none on a local disk); FileNotFoundError once it is gone."""
        with open(self.path) as file:
            return file.read(), None

    def delete(self, generation: None = None) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


class _CloudStorageLockFile:
    """The lock object in a Cloud Storage bucket, through google-cloud-storage's generation preconditions."""

    def __init__(self, path: str):
        from google.cloud import storage

        bucket, _, name = path.split("://", 1)[1].partition("/")
        self.path, self._blob = path, storage.Client().bucket(bucket).blob(name)
        self.generation = None  # of the lock this process created

    def create(self, text: str) -> bool:
        from google.api_core import exceptions

        try:
            self._blob.upload_from_string(text, if_generation_match=0)
        except exceptions.PreconditionFailed:
            return False
        self.generation = self._blob.generation
        return True

    def read(self) -> tuple[str, int]:
        from google.api_core import exceptions

        try:
            text = self._blob.download_as_text()
        except exceptions.NotFound as error:
            raise FileNotFoundError(self.path) from error
        return text, self._blob.generation

    def delete(self, generation: int | None = None) -> None:
        from google.api_core import exceptions

        with contextlib.suppress(exceptions.NotFound, exceptions.PreconditionFailed):
            self._blob.delete(if_generation_match=generation or self.generation)


def lock_file(workdir: str):
    """The lock of `workdir` on its kind of storage; ConfigError where no exclusive create is available."""
    path = files.join(workdir, LOCK_FILE)
    kind = files.scheme(workdir)
    if not kind:
        return _LocalLockFile(path)
    if kind == "gs":
        return _CloudStorageLockFile(path)
    raise ConfigError(f"workdir: {workdir!r}: {kind}:// offers no exclusive create that jaxrep's work-directory lock "
                      "can use; use a local (or mounted) path or gs://")


def _try_lock(lock) -> str | None:
    """Creates the lock; returns None on success, else why it is held."""
    record = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        if lock.create(json.dumps(record)):
            return None
        try:
            text, generation = lock.read()
        except FileNotFoundError:  # released between our create and our read
            continue
        try:
            holder = json.loads(text)
        except ValueError:
            holder = {}
        if holder.get("host") == record["host"] and not _alive(int(holder.get("pid", -1))):
            lock.delete(generation)  # stale: left by a process of this host that no longer runs
            continue
        return (f"held by pid {holder.get('pid', '?')} on {holder.get('host', '?')} since "
                f"{holder.get('since', '?')}")
    return "could not take over the stale lock"


@contextlib.contextmanager
def workdir_lock(workdir: str):
    """Holds `<workdir>/LOCK` for the duration of the block; WorkdirLockedError if another job holds it."""
    lock = lock_file(workdir)
    refusal = None
    if jax.process_index() == 0:
        files.path(workdir).mkdir(parents=True, exist_ok=True)
        refusal = _try_lock(lock)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        refused = bool(multihost_utils.broadcast_one_to_all(refusal is not None))
        refusal = refusal or ("held by another job" if refused else None)
    if refusal is not None:
        raise WorkdirLockedError(f"workdir: {workdir!r} is in use ({refusal}); wait for that job, use another "
                                 f"work directory, or delete {lock.path} if that job is gone")
    try:
        yield
    finally:
        if jax.process_index() == 0:
            lock.delete()


def locks_workdir(train_fn):
    """Decorator for `train_fn(config, workdir, ...)`: runs it holding `workdir_lock(workdir)`."""

    @functools.wraps(train_fn)
    def locked(config, workdir: str, *args, **kwargs):
        with workdir_lock(workdir):
            return train_fn(config, workdir, *args, **kwargs)

    return locked

"""One job per work directory: the lock refuses a live holder, takes over a dead one's, and is released on exit."""

import json
import os
import socket
import subprocess
import sys

import pytest

from jaxrep.run.workdir_lock import LOCK_FILE, WorkdirLockedError, locks_workdir, workdir_lock


def _hold(path, pid, host=None):
    path.write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid, "since": "earlier"}))


def test_lock_is_held_inside_and_released_after(tmp_path):
    with workdir_lock(str(tmp_path)):
        holder = json.loads((tmp_path / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(WorkdirLockedError, match=f"held by pid {os.getpid()}"):
            with workdir_lock(str(tmp_path)):
                pass
    assert not (tmp_path / LOCK_FILE).exists()


def test_live_and_foreign_holders_are_refused_and_a_dead_holder_is_taken_over(tmp_path):
    _hold(tmp_path / LOCK_FILE, os.getppid())  # the parent process: alive
    with pytest.raises(WorkdirLockedError, match="is in use .* delete .*LOCK if that job is gone"):
        with workdir_lock(str(tmp_path)):
            pass
    _hold(tmp_path / LOCK_FILE, 1, host="another-host")  # cannot be checked from here: refused
    with pytest.raises(WorkdirLockedError, match="on another-host"):
        with workdir_lock(str(tmp_path)):
            pass
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _hold(tmp_path / LOCK_FILE, dead.pid)
    calls = []
    locks_workdir(lambda config, workdir: calls.append(json.loads((tmp_path / LOCK_FILE).read_text())["pid"]))(
        None, str(tmp_path))
    assert calls == [os.getpid()] and not (tmp_path / LOCK_FILE).exists()


def test_the_lock_is_released_when_the_job_fails(tmp_path):
    def failing(config, workdir):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        locks_workdir(failing)(None, str(tmp_path))
    assert not (tmp_path / LOCK_FILE).exists()

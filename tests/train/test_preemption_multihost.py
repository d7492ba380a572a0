"""Pod-safe preemption: a SIGTERM that reaches only one of two `jax.distributed` CPU processes stops both at the
same step (JAX's preemption sync point), both save it and exit 0, and resuming from it is exact."""

import json
import os
import signal
import subprocess
import sys
import time

from jaxrep.checkpoint import Checkpointer
from tests.helpers import REPO, free_port

WORKER = os.path.join(REPO, "tests", "train", "preemption_worker.py")


def start_workers(workdir, total_steps, out_dir):
    """Starts both workers; each writes `out_dir/{i}.json` and its stdout/stderr to `out_dir/{i}.out/.err`
    (files, not pipes, so a chatty worker never blocks on a full pipe while the test polls)."""
    out_dir.mkdir()
    port = free_port()
    return [subprocess.Popen([sys.executable, WORKER, str(port), str(i), str(workdir), str(total_steps),
                              str(out_dir / f"{i}.json")], cwd=REPO, stdout=open(out_dir / f"{i}.out", "w"),
                             stderr=open(out_dir / f"{i}.err", "w"))
            for i in range(2)]


def finish(processes, out_dir):
    """Waits for both workers; returns their stdouts and result JSONs."""
    for i, process in enumerate(processes):
        assert process.wait(timeout=300) == 0, (out_dir / f"{i}.err").read_text()[-3000:]
    return ([(out_dir / f"{i}.out").read_text() for i in range(2)],
            [json.load(open(out_dir / f"{i}.json")) for i in range(2)])


def test_sigterm_to_one_process_stops_both_at_the_same_step_and_resumes_exactly(tmp_path):
    workdir, metrics = tmp_path / "preempted", tmp_path / "preempted" / "metrics.jsonl"
    processes = start_workers(workdir, 100_000, tmp_path / "a")
    deadline = time.time() + 240
    # Process 0 logs every step; the steps are collective, so process 1 is there too.
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        for i, process in enumerate(processes):
            assert process.poll() is None, (tmp_path / "a" / f"{i}.err").read_text()[-3000:]
        time.sleep(0.2)
    processes[0].send_signal(signal.SIGTERM)  # process 1 gets no signal
    stdouts, results = finish(processes, tmp_path / "a")
    stopped = results[0]["step"]
    assert results[1]["step"] == stopped >= 3
    assert all(f"SIGTERM: saved step {stopped}, exiting" in stdout for stdout in stdouts)
    assert results[0]["state_sha256"] == results[1]["state_sha256"]
    assert Checkpointer(workdir / "checkpoints", save_every=1).all_steps() == [stopped]

    total = stopped + 2
    # The resumed and the uninterrupted pair run side by side (they share nothing but the compilation cache).
    resuming = start_workers(workdir, total, tmp_path / "b")
    uninterrupted = finish(start_workers(tmp_path / "uninterrupted", total, tmp_path / "c"), tmp_path / "c")[1]
    stdouts, resumed = finish(resuming, tmp_path / "b")
    assert all(f"restored step {stopped}" in stdout for stdout in stdouts)
    assert [r["step"] for r in resumed + uninterrupted] == [total] * 4
    # Params, EMA and optimizer state bitwise equal to the run that was never interrupted, on both processes.
    assert len({r["state_sha256"] for r in resumed + uninterrupted}) == 1

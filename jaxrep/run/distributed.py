"""Starting a multi-process JAX run from an entrypoint's `distributed` sub-config, with one-line failures.

`jax.distributed.initialize` must run before anything starts the XLA backend (`jax.devices()`, a computation, a
preemption guard asking `jax.process_count()`); `train.cli.run_main` calls `initialize_from_config` first thing.

The sub-config (`configs/_common.py:distributed_config`):
  enabled: call `jax.distributed.initialize`;
  coordinator_address: process 0's "host:port"; empty lets JAX detect the cluster (TPU pod slice, SLURM, Open MPI);
  num_processes, process_id: with an address, the number of processes and this one's id;
  initialization_timeout: seconds to wait for every process to join.

What can go wrong, and what a user sees (one line, exit status 1, every waiting process within the timeout):
- a malformed sub-config: `config error: distributed.FIELD: ...` before anything connects;
- no cluster to detect: `error: distributed.coordinator_address: ...`;
- nothing listening at the coordinator's address: `error: distributed.coordinator_address: ...` on the others;
- fewer processes started than `num_processes` says: `error: distributed.num_processes: ...` on those started;
- processes started with different `num_processes`: `error: distributed.num_processes: ...` on every process.
JAX's coordination client aborts the process (a C++ fatal error with a stack trace) when its own connect deadline
passes, so the wait is bounded here by a watchdog thread that fires first (the client's deadline is set
`CLIENT_DEADLINE_MARGIN_S` later), prints the line and ends the process. One case stays JAX's own fatal error: a
`process_id` at or above the coordinator's process count, which the coordinator rejects at once (the other
processes then report the missing process in one line).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from typing import Any

import jax
import numpy as np

from jaxrep.config_checks import require

CLIENT_DEADLINE_MARGIN_S = 30


class ClusterError(RuntimeError):
    """The processes did not form the cluster their `distributed` config describes; the message names the field."""


def validate(distributed: Any) -> None:
    """Checks a `distributed` sub-config; raises ConfigError naming the field."""
    require(isinstance(distributed.enabled, bool), "distributed.enabled", "must be True or False")
    require(isinstance(distributed.initialization_timeout, int) and distributed.initialization_timeout > 0,
            "distributed.initialization_timeout", f"must be a whole number of seconds > 0, "
            f"got {distributed.initialization_timeout!r}")
    address = distributed.coordinator_address
    if not address:
        return
    host, _, port = address.rpartition(":")
    require(bool(host) and port.isdigit(), "distributed.coordinator_address",
            f"must be HOST:PORT (process 0's address), got {address!r}")
    require(distributed.num_processes >= 1, "distributed.num_processes",
            f"must be >= 1 with a coordinator_address, got {distributed.num_processes}")
    require(0 <= distributed.process_id < distributed.num_processes, "distributed.process_id",
            f"must be in [0, distributed.num_processes={distributed.num_processes}), got {distributed.process_id}")


def _listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
            return True
    except OSError:
        return False


def _timeout_message(distributed: Any) -> str:
    """Why the cluster did not form within the timeout, naming the field to check."""
    seconds, address = distributed.initialization_timeout, distributed.coordinator_address
    wait_longer = f"(distributed.initialization_timeout={seconds} s sets the wait)"
    if address and distributed.process_id != 0 and not _listening(address):
        return (f"distributed.coordinator_address: nothing listened at {address} for {seconds} s: start process 0 "
                f"there, or correct the address {wait_longer}")
    expected = distributed.num_processes or "all"
    return (f"distributed.num_processes: {expected} processes did not all join the coordinator"
            f"{' at ' + address if address else ''} within {seconds} s: start every process with the same "
            f"distributed.num_processes, or set it to the number started {wait_longer}")


def _watchdog(distributed: Any) -> threading.Event:
    """A daemon thread that prints the timeout line and ends the process unless the returned event is set in time
    (the coordination client's wait releases the GIL, so the thread runs while the main thread waits)."""
    joined = threading.Event()

    def watch():
        if not joined.wait(distributed.initialization_timeout):
            print(f"error: {_timeout_message(distributed)}", file=sys.stderr, flush=True)
            os._exit(1)

    threading.Thread(target=watch, name="jaxrep-distributed-watchdog", daemon=True).start()
    return joined


def _check_num_processes(distributed: Any) -> None:
    """ClusterError on every process unless every process was started with the cluster's process count (JAX forms a
    cluster of the coordinator's count even where another process was given a different one)."""
    from jax.experimental import multihost_utils

    count = jax.process_count()
    told = np.asarray(multihost_utils.process_allgather(np.int32(distributed.num_processes or count))).reshape(-1)
    if (told != count).any():
        raise ClusterError(f"distributed.num_processes: the {count} processes were started with different values "
                           f"({', '.join(str(int(n)) for n in told)}); give every process the number started")


def initialize_from_config(distributed: Any) -> None:
    """Validates `distributed`, then, when enabled, `jax.distributed.initialize` (module docstring); before any other
    JAX call. Raises ConfigError or ClusterError naming the field; ends the process with one line when the processes
    do not all join within `distributed.initialization_timeout`."""
    validate(distributed)
    if not distributed.enabled:
        return
    joined = _watchdog(distributed)
    try:
        jax.distributed.initialize(
            coordinator_address=distributed.coordinator_address or None,
            num_processes=distributed.num_processes or None,
            process_id=None if distributed.process_id < 0 else distributed.process_id,
            initialization_timeout=distributed.initialization_timeout + CLIENT_DEADLINE_MARGIN_S)
    except ValueError as error:  # auto-detection found no cluster
        raise ClusterError(f"distributed.coordinator_address: empty, and JAX detected no cluster (TPU pod slice, "
                           f"SLURM, Open MPI) to take it from ({error}); on other machines set coordinator_address, "
                           "num_processes and process_id") from error
    finally:
        joined.set()
    _check_num_processes(distributed)


__all__ = ["CLIENT_DEADLINE_MARGIN_S", "ClusterError", "initialize_from_config", "validate"]

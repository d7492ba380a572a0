"""Test session setup: 8 fake CPU devices so data-parallel paths are exercised on any machine, and one
persistent compilation cache for the whole session.

The flags must be set before JAX initialises its backend, hence at import of this conftest.
Tests that want a single device build their mesh from `jax.devices()[:1]`.

The test programs are tiny, so compiling them costs far more than running them. The session therefore asks
XLA:CPU for its lowest backend (LLVM) optimisation level: the same HLO passes and fusion decisions, cheaper
machine code, about half the time of the compile-bound tests (measured on 2 cores: 101 s -> 55 s for the
aligned 8-device tests). Training runs and benchmarks keep XLA's default; export
`XLA_FLAGS=--xla_backend_optimization_level=2` to test at the default level.

The tests build the same tiny programs over and over (every entrypoint run jits fresh closures of the same
train step, and the resume/CLI tests start subprocesses that compile them again); on 2 CPU cores compiling is
most of a tiny run. A persistent cache in a fresh per-session directory turns the repeats into hits. It is set
through the environment, so the subprocesses share it. A cache hit loads the very executable a compile would
produce, so results (bitwise-resume tests included) are unchanged; `test_second_call_does_not_recompile`
checks the in-memory dispatch cache, which the persistent cache does not touch.
"""

import os
import shutil
import tempfile

_flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
if "--xla_backend_optimization_level" not in _flags:
    _flags += " --xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = _flags.strip()
# The suite runs on the CPU, also where the `tpu` extra installs libtpu (the TPU compile tests use compile-only
# topology devices): no process probes for a TPU or takes libtpu's lockfile.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MUJOCO_GL", "disable")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _SESSION_CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxrep_test_jax_cache_")
else:
    _SESSION_CACHE = None  # the caller's own cache directory: use it and leave it in place
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def pytest_unconfigure(config):
    if _SESSION_CACHE is not None:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)

"""Test session setup: 8 fake CPU devices so data-parallel paths are exercised on any machine.

The flag must be set before JAX initialises its backend, hence at import of this conftest.
Tests that want a single device build their mesh from `jax.devices()[:1]`.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("MUJOCO_GL", "disable")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

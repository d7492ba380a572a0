"""One process of the two-process preemption test in test_preemption_multihost.py (not collected by pytest).

usage: python tests/train/preemption_worker.py PORT PROCESS_ID WORKDIR TOTAL_STEPS OUT_JSON
Trains the tiny SiT config with 2 fake CPU devices per process in the shared WORKDIR (resuming from its latest
checkpoint) and writes the step it stopped at and a parameter checksum.
"""

import hashlib
import json
import os
import sys

port, process_id, workdir, total_steps, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
# 2 fake devices per process; other flags (the tests' --xla_backend_optimization_level=0) pass through.
flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
os.environ["XLA_FLAGS"] = " ".join(flags + ["--xla_force_host_platform_device_count=2"])
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxrep import parallel  # noqa: E402

parallel.initialize_distributed(f"localhost:{port}", 2, process_id)

from tests.helpers import tiny_diffusion_config as tiny_config  # noqa: E402
from train import diffusion as train_diffusion  # noqa: E402

# checkpoint_every beyond total_steps: only the preemption save and the final save happen.
config = tiny_config(num_devices=0, total_steps=total_steps, checkpoint_every=10**9)
state = train_diffusion.train_and_evaluate(config, workdir)
# Bitwise fingerprint of the whole train state (params, EMA, optimizer); the state is replicated.
digest = hashlib.sha256()
for leaf in jax.tree.leaves(state):
    digest.update(np.asarray(jax.device_get(leaf)).tobytes())
with open(out, "w") as f:
    json.dump({"step": int(state.step), "state_sha256": digest.hexdigest()}, f)

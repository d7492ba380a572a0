"""One process of the two-process CPU test in test_multihost.py (not collected by pytest).

usage: python tests/train/multihost_worker.py PORT PROCESS_ID NUM_PROCESSES OUT_JSON
Runs 2 SiT train steps on the global mesh with this process's data shard and writes the losses, a parameter
checksum and the labels of its local batches.
"""

import json
import os
import sys

port, process_id, num_processes, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxrep import parallel  # noqa: E402

parallel.initialize_distributed(f"localhost:{port}", num_processes, process_id)

from jaxrep.data import make_dataset, make_iterator  # noqa: E402
from tests.helpers import tiny_diffusion_config as tiny_config  # noqa: E402
from train import diffusion as train_diffusion  # noqa: E402

config = tiny_config(batch_size=8, num_devices=0)
experiment = train_diffusion.build_experiment(config)
iterator = make_iterator(make_dataset(experiment.source, global_batch_size=config.batch_size,
                                      root_key=jax.random.key(config.seed)))
state, losses, labels = experiment.state, [], []
for _ in range(2):
    local = next(iterator)
    labels.append(local["label"].tolist())
    state, metrics = experiment.jitted_step(state, parallel.global_batch(local, experiment.mesh))
    losses.append(float(metrics["loss"]))
checksum = float(sum(np.asarray(jax.device_get(leaf), np.float64).sum() for leaf in jax.tree.leaves(state.params)))
with open(out, "w") as f:
    json.dump({"losses": losses, "checksum": checksum, "labels": labels, "devices": jax.device_count(),
               "local_devices": jax.local_device_count(), "images": [np.asarray(local["image"]).sum().item()]}, f)

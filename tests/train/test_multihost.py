"""Two local processes with `jax.distributed.initialize` on CPU train SiT on the global mesh, matching one
process that runs the same global batch; each process feeds its own, disjoint shard."""

import json
import os
import subprocess
import sys

import jax
import numpy as np

from jaxrep import parallel
from jaxrep.data import make_dataset, make_iterator
from tests.helpers import REPO, free_port
from tests.helpers import tiny_diffusion_config as tiny_config
from train import diffusion as train_diffusion


def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
    port = free_port()
    worker = os.path.join(REPO, "tests", "train", "multihost_worker.py")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    processes = [subprocess.Popen([sys.executable, worker, str(port), str(i), "2", str(tmp_path / f"{i}.json")],
                                  cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
    results = [json.load(open(tmp_path / f"{i}.json")) for i in range(2)]
    assert all(r["devices"] == 4 and r["local_devices"] == 2 for r in results)
    assert results[0]["losses"] == results[1]["losses"]
    assert results[0]["checksum"] == results[1]["checksum"]
    # Per-host shards differ and together make the global batch (4 examples each of 8).
    for step in range(2):
        assert len(results[0]["labels"][step]) == len(results[1]["labels"][step]) == 4

    # One process, 4 devices, fed the concatenation of the two hosts' local batches.
    config = tiny_config(batch_size=8, num_devices=4)
    experiment = train_diffusion.build_experiment(config, jax.devices()[:4])
    shards = [make_iterator(make_dataset(experiment.source, global_batch_size=8, root_key=jax.random.key(config.seed),
                                         process_index=i, process_count=2)) for i in range(2)]
    state, losses = experiment.state, []
    for step in range(2):
        local = [next(shard) for shard in shards]
        assert [b["label"].tolist() for b in local] == [results[0]["labels"][step], results[1]["labels"][step]]
        assert not np.array_equal(local[0]["image"], local[1]["image"])
        batch = {k: np.concatenate([local[0][k], local[1][k]]) for k in local[0]}
        state, metrics = experiment.jitted_step(state, parallel.global_batch(batch, experiment.mesh))
        losses.append(float(metrics["loss"]))
    np.testing.assert_allclose(results[0]["losses"], losses, rtol=1e-5)
    checksum = float(sum(np.asarray(leaf, np.float64).sum() for leaf in jax.tree.leaves(state.params)))
    np.testing.assert_allclose(results[0]["checksum"], checksum, rtol=1e-6)

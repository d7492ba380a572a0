"""One process of the multi-process latent-pipeline test in test_latent_pipeline.py (not collected by pytest).

usage: python tests/train/latent_multihost_worker.py PORT PROCESS_ID NUM_PROCESSES IMAGES VAE DATASET_OUT RUN SAMPLES_OUT
Prepares IMAGES into DATASET_OUT with this process's share of the shards, then samples the trained run RUN (decoded
through VAE) into SAMPLES_OUT, each on this process's 2 CPU devices; writes DATASET_OUT/process_<id>.json with the
shards this process wrote.
"""

import json
import os
import sys

port, process_id, num_processes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
images, vae, dataset_out, run, samples_out = sys.argv[4:9]
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from jaxrep import parallel  # noqa: E402

parallel.initialize_distributed(f"localhost:{port}", num_processes, process_id)

from tests.train.latent_fixtures import prepare_config, sample_config  # noqa: E402
from train import prepare_latents, sample  # noqa: E402

written = prepare_latents.prepare(prepare_config(images, vae), dataset_out)["written"]
with open(os.path.join(dataset_out, f"process_{process_id}.json"), "w") as file:
    json.dump(written, file)
sample.run(sample_config(output_dir=samples_out), run)

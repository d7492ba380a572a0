"""A finished run's config, read back for sampling and evaluation (`train.sample`, `train.evaluate`)."""

from __future__ import annotations

import json

import ml_collections

from configs import diffusion as diffusion_configs
from jaxrep import files


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The run's resolved config from `<workdir>/config.json`, over today's defaults (fields added since the run
    keep their defaults, so older work directories still load)."""
    path = files.path(files.join(workdir, "config.json"))
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {workdir!r} is not a train.diffusion work directory")
    saved = json.loads(path.read_text())
    config = diffusion_configs.base_config()
    config.update(saved)
    return config


def sampling_config(run_config: ml_collections.ConfigDict, eval_config) -> ml_collections.ConfigDict:
    """The run's config with the evaluation's sample overrides, devices and batch size (the training batch size is
    irrelevant here, and validation requires it to split over the mesh)."""
    config = run_config.copy_and_resolve_references()
    for name, value in eval_config.sample.items():
        if value is not None:
            config.sample[name] = value
    config.num_devices = eval_config.num_devices
    config.batch_size = eval_config.batch_size
    return config

"""Evaluation of a diffusion work directory: `python -m train.evaluate --config=configs/evaluate.py:PRESET
--workdir=DIR [--config.a.b=value ...]`.

Presets:
  cpu     500 EMA samples with the run's own sampler settings; FD, precision, recall, density and coverage in the
          features of the in-repo eval net (made first if missing, about a minute); a few minutes on 2 CPU cores.
  fid10k  10k samples, FID in pytorch-fid's Inception (`features.inception_path` = its weight file).
  fid50k  50k samples, the standard FID-50K protocol of ADM/REPA (reference: `reference.num_images`, default
          50k, capped at the dataset size).
`sample.*` fields left at None take the value the run was trained with (its config.json).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from configs._common import distributed_config, preset_base
from jaxrep import files
from jaxrep.config_checks import ConfigError, require, require_choice, require_positive
from jaxrep.diffusion.samplers import ODE_METHODS, SAMPLERS

PRESETS = ("cpu", "fid10k", "fid50k")


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.preset = ""  # name of the preset this config came from
    config.step = -1  # checkpoint step to evaluate; -1: the latest
    config.use_ema = True  # sample with the EMA weights (as REPA/SiT evaluate); False: the raw weights
    config.num_samples = 500  # images to generate
    config.batch_size = 100  # images per sampling call of one process (divisible by its device count)
    config.seed = 0  # root PRNG seed of the sampling noise (batch b uses fold_in(key, b))
    config.num_devices = 0  # devices per process; 0 means all local devices
    config.grid_images = 64  # samples shown in the PNG grid
    config.output_dir = ""  # where the .npz, results.json and grid go; empty: <workdir>/eval/<run description>
    config.labels = "balanced"  # sample labels: 'balanced' (i mod classes) or 'random' (uniform, REPA generate.py)
    config.sample_only = False  # write the ADM .npz and grid, compute no features or metrics

    config.vae = ml_collections.ConfigDict()  # the SD-VAE decoding a latent run's samples
    config.vae.path = ""  # diffusers AutoencoderKL dir or .safetensors; empty: the prepared dataset's VAE
    config.vae.dtype = "float32"  # decoder activation dtype: 'float32' or 'bfloat16'

    config.distributed = distributed_config()

    config.sample = ml_collections.ConfigDict()  # None: the run's own value
    config.sample.sampler = config_dict.placeholder(str)  # 'ode' or 'sde'
    config.sample.ode_method = config_dict.placeholder(str)  # 'euler' or 'heun'
    config.sample.num_steps = config_dict.placeholder(int)  # integration steps
    config.sample.cfg_scale = config_dict.placeholder(float)  # guidance scale; <= 1 disables (REPA guides only above 1)
    config.sample.guidance_low = config_dict.placeholder(float)  # guidance applies for t in [low, high]
    config.sample.guidance_high = config_dict.placeholder(float)

    config.features = ml_collections.ConfigDict()
    config.features.extractor = "eval_net"  # 'eval_net' (in-repo, CPU-friendly) or 'inception' (standard FID)
    config.features.eval_net_path = ""  # eval-net checkpoint dir; empty: workdirs/eval_net_<data source>
    config.features.inception_path = ""  # pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or .safetensors)
    config.features.batch_size = 250  # images per feature-extraction call (divisible by the device count)

    config.reference = ml_collections.ConfigDict()
    config.reference.num_images = 0  # real images for the reference statistics; 0: the whole training set
    config.reference.cache_dir = "workdirs/reference_features"  # cached reference statistics and features

    config.prdc_k = 5  # k of the k-NN radii (Kynkaanniemi et al.; Naeem et al.)
    config.prdc_max_samples = 10_000  # samples per set used for precision/recall/density/coverage
    return config


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    config = preset_base(preset, PRESETS, base_config)
    if preset.startswith("fid"):
        config.features.extractor = "inception"
        config.num_samples = 10_000 if preset == "fid10k" else 50_000
        config.batch_size = 256  # divisible by 1, 2, 4 or 8 devices per process
        config.features.batch_size = 256
        config.reference.num_images = 50_000
    return config


def validate(config: ml_collections.ConfigDict, *, num_devices: int) -> None:
    """Raises ConfigError naming the field."""
    require_positive(config, "num_samples", "batch_size", "grid_images", "features.batch_size", "prdc_k",
                     "prdc_max_samples")
    require(config.batch_size % num_devices == 0, "batch_size",
            f"{config.batch_size} is not divisible by the {num_devices} devices of the mesh")
    require(config.features.batch_size % num_devices == 0, "features.batch_size",
            f"{config.features.batch_size} is not divisible by the {num_devices} devices of the mesh")
    require(config.step >= -1, "step", "must be a checkpoint step or -1 (latest)")
    require(config.num_devices >= 0, "num_devices", "must be >= 0 (0: all devices)")
    require(config.reference.num_images >= 0, "reference.num_images", "must be >= 0 (0: the whole dataset)")
    require(config.num_samples > config.prdc_k, "num_samples", f"must exceed prdc_k={config.prdc_k}")
    require_choice(config, "features.extractor", ("eval_net", "inception"))
    require_choice(config, "labels", ("balanced", "random"))
    require_choice(config, "vae.dtype", ("float32", "bfloat16"))
    if config.sample.sampler is not None:
        require_choice(config, "sample.sampler", SAMPLERS)
    if config.sample.ode_method is not None:
        require_choice(config, "sample.ode_method", ODE_METHODS)
    if config.sample.num_steps is not None:
        require_positive(config, "sample.num_steps")
    if config.features.extractor == "inception" and not config.sample_only:
        path = config.features.inception_path
        require(bool(path) and files.path(path).is_file(), "features.inception_path",
                f"no FID Inception weights at {path!r}: pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
                "(docs/evaluation.md), or use features.extractor='eval_net'")


__all__ = ["ConfigError", "PRESETS", "get_config", "validate"]

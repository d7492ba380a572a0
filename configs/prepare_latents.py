"""SD-VAE latent preparation: `python -m train.prepare_latents --config=configs/prepare_latents.py:PRESET
--workdir=OUTPUT_DIR --config.data_dir=IMAGES --config.vae.path=VAE [--config.a.b=value ...]`.

Presets:
  imagenet256  ADM centre crop to 256 px, SD-VAE posterior at 32 x 32 x 4 (REPA's ImageNet 256 setting).
  imagenet512  the same at 512 px (64 x 64 x 4 latents).
"""

from __future__ import annotations

import ml_collections

from configs._common import ACTIVATION_DTYPES, distributed_config, preset_base
from jaxrep import files
from jaxrep.config_checks import require, require_choice, require_positive
from jaxrep.weights import hub

PRESETS = ("imagenet256", "imagenet512")


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.preset = ""  # name of the preset this config came from
    config.data_dir = ""  # class-folder tree (label = sorted folder index) or a folder with dataset.json
    config.labels_path = ""  # EDM dataset.json ({"labels": [[relative/path, label], ...]}); empty: see data_dir
    config.max_images = 0  # prepare only the first N images of the sorted list; 0: all
    config.image_size = 256  # ADM centre-crop side (256 or 512)
    config.image_format = "png"  # stored crop for the alignment encoder: 'png' (lossless, REPA) or 'jpeg' (q 95)
    config.on_error = "stop"  # an unreadable image: 'stop' (one line naming it) or 'skip' (warn, listed per shard)
    config.batch_size = 32  # images per encoder call in each process (divisible by its local devices)
    config.records_per_shard = 1024  # images per ArrayRecord shard (the unit of resume and of per-host reading)
    config.read_threads = 8  # threads reading, cropping and re-encoding images ahead of the SD-VAE
    config.show_progress = True  # progress bar (process 0)

    config.vae = ml_collections.ConfigDict()
    config.vae.path = ""  # diffusers AutoencoderKL directory or .safetensors (stabilityai/sd-vae-ft-ema or -mse)
    config.vae.dtype = "float32"  # encoder activation dtype: 'float32' or 'bfloat16'

    config.distributed = distributed_config()
    return config


def get_config(preset: str = "imagenet256") -> ml_collections.ConfigDict:
    config = preset_base(preset, PRESETS, base_config)
    config.image_size = 512 if preset == "imagenet512" else 256
    return config


def validate(config: ml_collections.ConfigDict, *, num_local_devices: int) -> None:
    """Raises ConfigError naming the field; files are checked here, before the VAE is built."""
    require_positive(config, "image_size", "batch_size", "records_per_shard", "read_threads")
    require(config.max_images >= 0, "max_images", "must be >= 0 (0: all images)")
    require(config.batch_size % num_local_devices == 0, "batch_size",
            f"{config.batch_size} is not divisible by this process's {num_local_devices} devices")
    require(config.image_size % 8 == 0, "image_size", f"must be a multiple of the SD-VAE factor 8, got "
            f"{config.image_size}")
    require_choice(config, "image_format", ("png", "jpeg"))
    require_choice(config, "on_error", ("stop", "skip"))
    require_choice(config, "vae.dtype", ACTIVATION_DTYPES)
    require(bool(config.data_dir) and files.path(config.data_dir).is_dir(), "data_dir",
            f"no image directory at {config.data_dir!r}")
    require(not config.labels_path or files.path(config.labels_path).is_file(), "labels_path",
            f"no such file {config.labels_path!r}")
    require(bool(config.vae.path) and (hub.is_hub_name(config.vae.path) or files.path(config.vae.path).exists()),
            "vae.path", f"no SD-VAE at {config.vae.path!r}: a diffusers AutoencoderKL directory (config.json + "
            "diffusion_pytorch_model.safetensors), a .safetensors file or a Hugging Face name such as "
            "hf://stabilityai/sd-vae-ft-ema (docs/imagenet.md)")


__all__ = ["PRESETS", "get_config", "validate"]

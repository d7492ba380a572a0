"""Builders shared by the latent-pipeline tests (not a test module): a tiny image
folder, a tiny random-weight diffusers SD-VAE, the preparation / training / evaluation configs."""

import os

import numpy as np
from PIL import Image

from configs import diffusion as diffusion_configs
from configs import evaluate as evaluate_configs
from configs import prepare_latents as prepare_configs

IMAGE_SIZE = 16  # ADM crop side; the tiny VAE (2 blocks) downsamples by 2 -> 8 x 8 x 4 latents
NUM_CLASSES = 3
IMAGES_PER_CLASS = 6
CORRUPT = "class_1/zz_corrupt.png"


def make_image_folder(root: str) -> str:
    """3 class folders of 6 RGB images of assorted sizes and aspect ratios, plus one corrupt file."""
    rng = np.random.default_rng(0)
    for label in range(NUM_CLASSES):
        folder = os.path.join(root, f"class_{label}")
        os.makedirs(folder, exist_ok=True)
        for i in range(IMAGES_PER_CLASS):
            height, width = rng.integers(12, 60, 2)
            image = (rng.uniform(0, 1, (height, width, 3)) * 80 + 80 * label).astype(np.uint8)
            Image.fromarray(image).save(os.path.join(folder, f"{i:02d}.{'png' if i % 2 else 'jpg'}"))
    with open(os.path.join(root, CORRUPT), "wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n this is not a PNG")
    return root


def make_tiny_vae(directory: str) -> str:
    """diffusers.AutoencoderKL (random weights) saved as config.json + diffusion_pytorch_model.safetensors."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, sample_size=IMAGE_SIZE)
    vae.save_pretrained(directory, safe_serialization=True)
    return directory


PREPARE_VALUES = {"image_size": IMAGE_SIZE, "batch_size": 8, "records_per_shard": 8, "on_error": "skip",
                  "show_progress": False, "read_threads": 2}
SAMPLE_VALUES = {"num_samples": 12, "batch_size": 8, "sample.num_steps": 2, "grid_images": 12, "sample_only": True}


def config_flags(values: dict) -> list[str]:
    """`values` as the entrypoint's `--config.a.b=v` flags."""
    return [f"--config.{key}={value}" for key, value in values.items()]


def prepare_config(data_dir: str, vae_dir: str, **overrides):
    values = {"data_dir": data_dir, "vae.path": vae_dir, **PREPARE_VALUES}
    config = prepare_configs.get_config("imagenet256")
    config.update_from_flattened_dict({**values, **overrides})
    return config


def train_config(dataset_dir: str, encoder_dir: str, **overrides):
    """A tiny SiT-with-REPA run on the prepared 8 x 8 x 4 latents (a 4 x 4 token grid, the encoder's grid)."""
    values = {"data.source": "latent_records", "data.path": dataset_dir, "data.num_classes": NUM_CLASSES,
              "batch_size": 8, "num_devices": 1, "total_steps": 20, "log_every": 5, "checkpoint_every": 10,
              "model.patch_size": 2, "model.hidden_size": 32, "model.depth": 2, "model.num_heads": 2,
              "optim.warmup_steps": 0, "sample.num_images": 4, "sample.num_steps": 2, "sample.cfg_scale": 1.5,
              "align.depth": 1, "align.encoder.path": encoder_dir, "align.projector_dim": 16}
    config = diffusion_configs.get_config("cpu_repa")
    config.update_from_flattened_dict({**values, **overrides})
    return config


def sample_config(**overrides):
    config = evaluate_configs.get_config("cpu")
    config.update_from_flattened_dict({**SAMPLE_VALUES, **overrides})
    return config

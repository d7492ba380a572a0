"""In-repo alignment target encoder: `python -m train.encoder --config=configs/encoder.py:PRESET --workdir=DIR`.

Presets:
  shapes32  ViT (width 64, depth 3, patch 4 -> an 8 x 8 token grid) on the coloured shapes (32x32x3); the
            target encoder of the `cpu_*` alignment presets. About 2 minutes on 2 CPU cores.
  dsprites  the same ViT on dSprites (64x64x1 shown as RGB), fed at 32 px (8 x 8 tokens).
  fashion_mnist  the same ViT on Fashion-MNIST's 60,000 training images (32x32 padded, shown as RGB), supervised
            by the class, batch 128 for 1875 steps (4 epochs); the target of the `fmnist_*` presets. Its
            linear-probe accuracy on the 10,000 test images is recorded with the weights.
The encoder is trained on the datasets' ground-truth factors (see train/encoder.py for why).
"""

from __future__ import annotations

import ml_collections

from configs._common import (
    ACTIVATION_DTYPES,
    FACTOR_SOURCES,
    factor_preset,
    factor_training_config,
    optim_config,
    validate_factor_training,
)
from jaxrep.config_checks import ConfigError, require, require_choice, require_positive

PRESETS = FACTOR_SOURCES


def base_config() -> ml_collections.ConfigDict:
    config = factor_training_config(seed=0, total_steps=400, optim=optim_config(
        learning_rate=2e-3, warmup_steps=40, weight_decay=0.05, grad_clip=1.0))
    config.image_size = 32  # encoder input side (REPA preprocessing: ImageNet mean/std, bicubic resize)

    config.model = ml_collections.ConfigDict()
    config.model.width = 64  # token width D_enc (the alignment target width)
    config.model.depth = 3  # ViT blocks
    config.model.num_heads = 4  # attention heads
    config.model.patch_size = 4  # patch side; image_size / patch_size tokens per side
    config.model.mlp_ratio = 4.0  # FFN width / token width
    config.model.dtype = "float32"  # activation dtype: 'float32' or 'bfloat16' (params, EMA, losses float32)

    config.coverage_weight = 1.0  # weight of the per-token foreground-coverage loss next to the factor losses
    return config


def get_config(preset: str = "shapes32") -> ml_collections.ConfigDict:
    config = factor_preset(preset, base_config)
    if preset == "fashion_mnist":
        # More compute than the diffusion model it guides gets (fmnist: 3000 steps of 32): 2.5x its images.
        config.batch_size = 128
        config.total_steps = 1875
        config.log_every = 125
    return config


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the field."""
    validate_factor_training(config)
    require_choice(config, "model.dtype", ACTIVATION_DTYPES)
    require_positive(config, "image_size", "model.width", "model.depth", "model.num_heads", "model.patch_size",
                     "model.mlp_ratio")
    require(config.image_size % config.model.patch_size == 0, "model.patch_size",
            f"image_size {config.image_size} is not divisible by the patch size {config.model.patch_size}")
    require(config.model.width % config.model.num_heads == 0, "model.width",
            f"{config.model.width} is not divisible by model.num_heads={config.model.num_heads}")
    require(config.coverage_weight >= 0, "coverage_weight", "must be >= 0")


__all__ = ["ConfigError", "PRESETS", "get_config", "validate"]

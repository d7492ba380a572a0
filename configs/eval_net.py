"""In-repo evaluation network: `python -m train.eval_net --config=configs/eval_net.py:PRESET --workdir=DIR`.

Presets:
  shapes32  pre-activation ResNet (widths 16-32-64, 128-d features) classifying all five factors of the coloured
            shapes (32x32x3); the feature extractor of `train.evaluate` for the `cpu` diffusion runs. About a
            minute on 2 CPU cores (held-out accuracy 1.0 on every factor).
  dsprites  the same network on dSprites (64x64x1).
  fashion_mnist  the same network classifying Fashion-MNIST's class (60,000 training images, batch 128, 1000
            steps): the feature extractor of `train.evaluate` for the `fmnist` runs.
Seed 1 and a convolutional architecture: unlike the alignment encoder (a ViT, seed 0), so alignment to the
encoder is not graded with the encoder's own features.
"""

from __future__ import annotations

import ml_collections

from configs._common import (
    FACTOR_SOURCES,
    factor_preset,
    factor_training_config,
    optim_config,
    validate_factor_training,
)
from jaxrep.config_checks import ConfigError, require, require_positive

PRESETS = FACTOR_SOURCES


def base_config() -> ml_collections.ConfigDict:
    # Seed 1: the alignment encoder uses 0. All factors reach ~100% held-out accuracy by ~100 of the 300 steps.
    config = factor_training_config(seed=1, total_steps=300, optim=optim_config(
        learning_rate=2e-3, warmup_steps=50, weight_decay=1e-4, grad_clip=1.0))
    config.model = ml_collections.ConfigDict()
    config.model.widths = (16, 32, 64)  # stem width, then one stride-2 residual block per further width
    config.model.feature_dim = 128  # width of the penultimate features used for FD and precision/recall
    return config


def get_config(preset: str = "shapes32") -> ml_collections.ConfigDict:
    config = factor_preset(preset, base_config)
    if preset == "fashion_mnist":
        config.batch_size = 128
        config.total_steps = 1000
        config.log_every = 100
    return config


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the field."""
    validate_factor_training(config)
    require_positive(config, "model.feature_dim")
    require(len(config.model.widths) >= 1 and all(int(w) > 0 for w in config.model.widths), "model.widths",
            f"needs positive widths, got {config.model.widths}")


__all__ = ["ConfigError", "PRESETS", "get_config", "validate"]

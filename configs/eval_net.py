"""In-repo evaluation network: `python -m train.eval_net --config=configs/eval_net.py:PRESET --workdir=DIR`.

Presets:
  shapes32  pre-activation ResNet (widths 16-32-64, 128-d features) classifying all five factors of the coloured
            shapes (32x32x3); the feature extractor of `train.evaluate` for the `cpu` diffusion runs. About a
            minute on 2 CPU cores (held-out accuracy 1.0 on every factor).
  dsprites  the same network on dSprites (64x64x1).
Seed 1 and a convolutional architecture: unlike the alignment encoder (a ViT, seed 0), so alignment to the
encoder is not graded with the encoder's own features.
"""

from __future__ import annotations

import ml_collections

from configs._common import optim_config, preset_base, validate_optim
from jaxrep.config_checks import ConfigError, require, require_choice, require_positive

PRESETS = ("shapes32", "dsprites")


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.preset = ""  # name of the preset this config came from
    config.seed = 1  # root PRNG seed: init, holdout split, data order (the alignment encoder uses 0)
    config.data_source = "shapes32"  # procedural dataset with factors: 'shapes32' or 'dsprites'
    config.holdout_fraction = 0.1  # images held out of training to report factor accuracy on unseen images

    config.model = ml_collections.ConfigDict()
    config.model.widths = (16, 32, 64)  # stem width, then one stride-2 residual block per further width
    config.model.feature_dim = 128  # width of the penultimate features used for FD and precision/recall

    config.batch_size = 64  # images per step
    config.total_steps = 300  # optimizer updates (all factors reach ~100% held-out accuracy by ~100)
    config.ema_decay = 0.99  # EMA of the weights; the EMA weights are saved
    config.log_every = 50  # steps between metric logs

    config.optim = optim_config(learning_rate=2e-3, warmup_steps=50, weight_decay=1e-4, grad_clip=1.0)  # AdamW
    return config


def get_config(preset: str = "shapes32") -> ml_collections.ConfigDict:
    config = preset_base(preset, PRESETS, base_config)
    config.data_source = preset
    return config


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the field."""
    require_choice(config, "data_source", PRESETS)
    require_positive(config, "model.feature_dim", "batch_size", "total_steps", "log_every")
    require(len(config.model.widths) >= 1 and all(int(w) > 0 for w in config.model.widths), "model.widths",
            f"needs positive widths, got {config.model.widths}")
    require(0.0 < config.holdout_fraction < 0.5, "holdout_fraction", "must be in (0, 0.5)")
    require(0.0 <= config.ema_decay < 1.0, "ema_decay", "must be in [0, 1)")
    validate_optim(config)


__all__ = ["ConfigError", "PRESETS", "get_config", "validate"]

"""Config pieces shared by several entrypoints' presets: the preset lookup, the `optim` sub-config and its checks.

The sub-config is what `jaxrep.training.make_optimizer` reads (global-norm clipping, then Adam or AdamW with a
linear warmup); each preset passes its own defaults and says where they come from.
"""

from __future__ import annotations

from typing import Callable, Iterable

import ml_collections

from jaxrep.config_checks import require, require_positive, unknown_preset

ACTIVATION_DTYPES = ("float32", "bfloat16")  # choices of every `*.dtype` field (params always stay float32)


def preset_base(preset: str, presets: Iterable[str],
                base_config: Callable[[], ml_collections.ConfigDict]) -> ml_collections.ConfigDict:
    """base_config() with `preset` recorded in `config.preset`; ConfigError for a name not in `presets`."""
    if preset not in presets:
        raise unknown_preset(preset, presets)
    config = base_config()
    config.preset = preset
    return config


def optim_config(*, learning_rate: float, warmup_steps: int, grad_clip: float,
                 weight_decay: float | None = None) -> ml_collections.ConfigDict:
    """The `optim` sub-config; `weight_decay=None` leaves that field out (plain Adam)."""
    optim = ml_collections.ConfigDict()
    optim.learning_rate = learning_rate  # peak rate
    optim.warmup_steps = warmup_steps  # linear warmup steps
    if weight_decay is not None:
        optim.weight_decay = weight_decay  # decoupled weight decay (AdamW)
    optim.grad_clip = grad_clip  # global-norm clipping; 0 disables
    return optim


def validate_optim(config: ml_collections.ConfigDict) -> None:
    """Checks `config.optim` (built by `optim_config`); raises ConfigError naming the field."""
    require_positive(config, "optim.learning_rate")
    require(config.optim.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0")
    if "weight_decay" in config.optim:
        require(config.optim.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    require(config.optim.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0 disables clipping)")

"""Config pieces shared by several entrypoints' presets: the preset lookup, the `optim` sub-config and its checks,
and the fields of the networks trained on the procedural datasets' factors (encoder, eval net).

The sub-config is what `jaxrep.training.make_optimizer` reads (global-norm clipping, then Adam or AdamW with a
linear warmup); each preset passes its own defaults and says where they come from.
"""

from __future__ import annotations

from typing import Callable, Iterable

import ml_collections

from jaxrep.config_checks import require, require_choice, require_positive, unknown_preset

ACTIVATION_DTYPES = ("float32", "bfloat16")  # choices of every `*.dtype` field (params always stay float32)


def preset_base(preset: str, presets: Iterable[str],
                base_config: Callable[[], ml_collections.ConfigDict]) -> ml_collections.ConfigDict:
    """base_config() with `preset` recorded in `config.preset`; ConfigError for a name not in `presets`."""
    if preset not in presets:
        raise unknown_preset(preset, presets)
    config = base_config()
    config.preset = preset
    return config


def distributed_config() -> ml_collections.ConfigDict:
    """The `distributed` sub-config of the entrypoints that run on several processes (`jaxrep.run.distributed`)."""
    distributed = ml_collections.ConfigDict()
    distributed.enabled = False  # call jax.distributed.initialize() before anything else (multi-host)
    distributed.coordinator_address = ""  # process 0's host:port; empty lets JAX detect the cluster (TPU pod, SLURM)
    distributed.num_processes = 0  # with coordinator_address: number of processes
    distributed.process_id = -1  # with coordinator_address: this process's id
    distributed.initialization_timeout = 300  # seconds to wait for every process to join (then one line, exit 1)
    return distributed


def logging_config() -> ml_collections.ConfigDict:
    """The `logging` sub-config of the training entrypoints: optional W&B next to metrics.jsonl and TensorBoard
    (`jaxrep.run.logging.MetricLogger`; the `wandb` extra). WANDB_MODE=offline logs without a network."""
    logging = ml_collections.ConfigDict()
    logging.wandb = False  # also log scalars, sample grids, videos and the config to W&B (process 0 only)
    logging.project = "jaxrep"
    logging.entity = ""  # empty: W&B's default entity
    logging.name = ""  # empty: the work directory's name
    logging.tags = ""  # comma-separated
    return logging


def validate_logging(config: ml_collections.ConfigDict) -> None:
    """Checks the `logging` sub-config; raises ConfigError naming the field."""
    if config.logging.wandb:
        require(bool(config.logging.project.strip()), "logging.project", "empty; name the W&B project")


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


FACTOR_SOURCES = ("shapes32", "dsprites", "fashion_mnist")  # datasets with ground-truth factors (FMNIST: its class)


def factor_training_config(*, seed: int, total_steps: int, optim: ml_collections.ConfigDict
                           ) -> ml_collections.ConfigDict:
    """The fields `jaxrep.experiments.factor_training.fit_on_factors` reads; the caller adds `model`."""
    config = ml_collections.ConfigDict()
    config.preset = ""  # name of the preset this config came from
    config.seed = seed  # root PRNG seed: init, holdout split, data order
    config.data_source = "shapes32"  # dataset with factors: 'shapes32', 'dsprites' or 'fashion_mnist' (the class)
    config.data_path = ""  # fashion_mnist: the folder of its IDX files (empty: Debian's)
    config.holdout_fraction = 0.1  # images held out of training to report factor accuracy on unseen images
    config.batch_size = 64  # images per step
    config.total_steps = total_steps  # optimizer updates
    config.ema_decay = 0.99  # EMA of the weights; the EMA weights are saved
    config.log_every = 50  # steps between metric logs
    config.optim = optim  # AdamW
    return config


def factor_preset(preset: str, base_config: Callable[[], ml_collections.ConfigDict]) -> ml_collections.ConfigDict:
    """The preset of a factor-trained network: its name is the dataset it trains on."""
    config = preset_base(preset, FACTOR_SOURCES, base_config)
    config.data_source = preset
    return config


def factor_preset_for_run(get_config: Callable[[str], ml_collections.ConfigDict], data: ml_collections.ConfigDict
                          ) -> ml_collections.ConfigDict:
    """The factor-trained network's preset for a diffusion run's `data` (its source; Fashion-MNIST: its IDX
    folder too), as `get_config` (configs/encoder.py or configs/eval_net.py) builds it."""
    config = get_config(data.source)
    config.data_path = data.path if data.source == "fashion_mnist" else ""
    return config


def validate_factor_training(config: ml_collections.ConfigDict) -> None:
    """Checks the fields of `factor_training_config`; raises ConfigError naming the field."""
    require_choice(config, "data_source", FACTOR_SOURCES)
    require_positive(config, "batch_size", "total_steps", "log_every")
    require(0.0 < config.holdout_fraction < 0.5, "holdout_fraction", "must be in (0, 0.5)")
    require(0.0 <= config.ema_decay < 1.0, "ema_decay", "must be in [0, 1)")
    validate_optim(config)

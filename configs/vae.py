"""VAE configs on dSprites: `python -m train.vae --config=configs/vae.py:PRESET --workdir=DIR`.

Presets:
  plain              ELBO only: the frozen generator of train/traversal.py and the unregularised baseline
                     of the from-scratch study. Small conv VAE, CPU budget: 1000 steps at batch 32
                     (about 4 minutes on 2 shared cores, evaluation included).
  regularized        the from-scratch setting of Song et al. (ICML 2023): the same VAE trained on
                     transformation sequences with the potential-flow regulariser, K = 5 potentials, one
                     per dSprites factor. CPU budget: 500 steps at batch 32 (a step costs about 4 plain ones).
  plain_paper,       the official from-scratch recipe (`scripts/*scratch*.sh`, `train_vae_scratch.py`):
  regularized_paper  batch 256, Adam 1e-4, 100k iterations, D = 10 (T = 5), lambda_pde = 1, on the Burgess
                     et al. conv VAE (the official model is a much wider ConvVAE with d = 226).
Both settings read the official subgrid of dSprites (3 x 5 x 8 x 8 x 8 = 7680 images, see
jaxrep/traversal/sequences.py).
"""

from __future__ import annotations

import ml_collections

from configs._common import logging_config, optim_config, preset_base, validate_logging, validate_optim
from jaxrep.config_checks import ConfigError, require, require_choice, require_positive
from jaxrep.data.procedural import DSprites
from jaxrep.data.traversal_sequences import OFFICIAL_STARTS, OFFICIAL_STOP, OFFICIAL_STRIDES
from jaxrep.traversal import EQUATIONS, SPATIAL_OPERATORS

PRESETS = ("plain", "regularized", "plain_paper", "regularized_paper")
METHODS = ("plain", "regularized")


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.preset = ""  # name of the preset this config came from
    config.method = "plain"  # 'plain' (ELBO) or 'regularized' (ELBO on sequences + potential flow)
    config.seed = 0  # root PRNG seed: init, per-example sampling noise, data order
    config.batch_size = 256  # global batch over all devices and hosts
    config.total_steps = 100_000  # optimizer updates (official: 100k)
    config.ema_decay = 0.0  # EMA of the weights used for evaluation; 0 evaluates the raw weights (official)
    config.num_devices = 0  # devices in the mesh; 0 means all devices

    config.data = ml_collections.ConfigDict()
    config.data.factor_starts = OFFICIAL_STARTS  # first class kept per dSprites factor (official start_idx)
    config.data.factor_stop = OFFICIAL_STOP  # classes kept are < this (official max_transform_len)
    config.data.factor_strides = OFFICIAL_STRIDES  # class stride per factor (official speeds)
    # Factors the sequences change, one per potential (official seq_transforms, in dSprites order here).
    config.data.sequence_factors = DSprites.factor_names

    config.model = ml_collections.ConfigDict()
    config.model.latent_dim = 10  # d
    config.model.channels = (32, 32, 64, 64)  # encoder conv widths (4 stride-2 convs; decoder mirrors)
    config.model.hidden_dim = 256  # Dense width on each side

    config.regularizer = ml_collections.ConfigDict()
    config.regularizer.num_potentials = 5  # K = len(data.sequence_factors), k <-> factor k (official: 16, 11 idle)
    config.regularizer.num_steps = 5  # T, rollout length (official D // 2 with D = 10)
    config.regularizer.equation = "wave"  # PDE the potentials solve: 'wave', 'heat', 'hamilton_jacobi'
    config.regularizer.operator = "hessian_rowsum"  # spatial operator: official 'hessian_rowsum', 'laplacian', ...
    config.regularizer.num_probes = 1  # Hutchinson probes per point (operator 'hutchinson')
    config.regularizer.width = 0  # potential MLP width; 0 means d (official)
    config.regularizer.pde_weight = 1.0  # lambda_pde on L_ic + L_pde - L_var (official 1)
    config.regularizer.variation_weight = 1.0  # weight of L_var inside the flow loss (official 1)

    # Adam at the official 1e-4 for every module, no warmup, no clipping (official: none).
    config.optim = optim_config(learning_rate=1e-4, warmup_steps=0, grad_clip=0.0)

    config.eval = ml_collections.ConfigDict()
    config.eval.num_images = 2000  # grid images encoded for MIG and DCI
    config.eval.dci_trees = 50  # boosting stages of DCI's gradient-boosted trees
    config.eval.nll_images = 256  # images of the importance-weighted NLL estimate
    config.eval.nll_samples = 100  # importance samples S per image
    config.eval.vp_pairs = 500  # regularized: traversal pairs per potential for the VP score
    config.eval.step_size = 1.0  # regularized: flow step of strips and VP pairs (training uses 1)
    config.eval.num_strips = 4  # regularized: traversal strips written (K rows x T + 1 columns each)

    config.log_every = 100  # steps between metric logs
    config.logging = logging_config()
    config.checkpoint_every = 10_000  # steps between checkpoints
    config.keep_checkpoints = 3  # checkpoints kept on disk
    return config


def get_config(preset: str = "plain") -> ml_collections.ConfigDict:
    config = preset_base(preset, PRESETS, base_config)
    config.method = preset.split("_")[0]
    if not preset.endswith("_paper"):
        # CPU budget (measured on 2 cores): a narrow VAE, batch 32, a larger rate for the short run.
        config.model.channels = (8, 16, 16, 32)
        config.model.hidden_dim = 128
        config.batch_size = 32
        config.total_steps = 1000
        config.optim.learning_rate = 1e-3
        config.log_every = 50
        config.checkpoint_every = 500
        config.eval.num_images = 1000
        config.eval.nll_images = 128
        config.eval.vp_pairs = 200
        if config.method == "regularized":
            # A sequence step encodes three images and runs the flow: about 4x a plain step on CPU.
            config.total_steps = 500
    return config


def validate(config: ml_collections.ConfigDict, *, num_devices: int) -> None:
    """Checks the config before anything compiles; raises ConfigError naming the field."""
    require_choice(config, "method", METHODS)
    validate_logging(config)
    require_positive(config, "batch_size", "total_steps", "log_every", "checkpoint_every", "keep_checkpoints",
                     "model.latent_dim", "model.hidden_dim", "eval.num_images",
                     "eval.dci_trees", "eval.nll_images", "eval.nll_samples")
    require(config.batch_size % num_devices == 0, "batch_size",
            f"{config.batch_size} is not divisible by the {num_devices} devices of the mesh")
    require(0.0 <= config.ema_decay < 1.0, "ema_decay", f"must be in [0, 1), got {config.ema_decay}")
    require(config.num_devices >= 0, "num_devices", "must be >= 0 (0: all devices)")
    validate_optim(config)
    require(config.model.latent_dim >= 2, "model.latent_dim", "MIG and DCI need at least 2 code dimensions")
    require(len(config.model.channels) >= 1 and all(c > 0 for c in config.model.channels), "model.channels",
            f"need positive conv widths, got {tuple(config.model.channels)}")
    require(64 % 2 ** len(config.model.channels) == 0, "model.channels",
            f"{len(config.model.channels)} stride-2 convs do not divide the 64-pixel images")
    validate_grid(config)
    if config.method == "regularized":
        validate_regularizer(config)


def validate_grid(config: ml_collections.ConfigDict) -> None:
    names, sizes = DSprites.factor_names, DSprites.factor_sizes
    data = config.data
    require(len(data.factor_starts) == len(names), "data.factor_starts", f"need one start per factor {names}")
    require(len(data.factor_strides) == len(names) and all(s > 0 for s in data.factor_strides),
            "data.factor_strides", f"need one positive stride per factor {names}")
    for name, size, start in zip(names, sizes, data.factor_starts):
        require(0 <= start < min(size, data.factor_stop), "data.factor_starts",
                f"start {start} of factor {name!r} keeps no class (size {size}, stop {data.factor_stop})")


def validate_regularizer(config: ml_collections.ConfigDict) -> None:
    """The from-scratch checks. K must equal the number of sequence factors, a stricter rule than the official code's.

    The official dSprites run (`scripts/mnist_scratch.sh`: K = 16, and its `--dsprites=false` reaches
    `train_vae_scratch.py`'s `type=bool` flag as True) draws k from the loader's 5 factors only
    (`dsprites.py` `SequenceDataset.__getitem__`), so it runs, and potentials 5..15 are never selected and
    sit idle at their init. Only the coloured-MNIST trainer (`lib/trainer_vae_scratch.py`) draws k from all
    K, and crashes for k >= 3 (`x_t` is unbound). Here idle potentials are refused rather than carried.
    """
    regularizer, factors = config.regularizer, tuple(config.data.sequence_factors)
    unknown = [name for name in factors if name not in DSprites.factor_names]
    require(not unknown and len(set(factors)) == len(factors) and factors, "data.sequence_factors",
            f"need distinct names from {DSprites.factor_names}, got {factors}")
    require(regularizer.num_potentials <= len(factors), "regularizer.num_potentials",
            f"{regularizer.num_potentials} potentials but only {len(factors)} factors to build sequences from "
            f"(data.sequence_factors = {factors}); potential k learns the sequences of factor k, so K must be at "
            f"most the number of factors")
    require(regularizer.num_potentials == len(factors), "regularizer.num_potentials",
            f"{regularizer.num_potentials} potentials for {len(factors)} sequence factors {factors}; each factor's "
            f"sequences need their own potential (K = number of factors)")
    require(regularizer.num_steps >= 2, "regularizer.num_steps", "must be >= 2 (pairs need two flow steps)")
    require_choice(config, "regularizer.equation", EQUATIONS)
    require_choice(config, "regularizer.operator", SPATIAL_OPERATORS)
    require(regularizer.num_probes >= 1, "regularizer.num_probes", "must be >= 1")
    require(regularizer.width >= 0, "regularizer.width", "must be >= 0 (0: the latent dimension)")
    require(regularizer.pde_weight >= 0, "regularizer.pde_weight", "must be >= 0")
    require(regularizer.variation_weight >= 0, "regularizer.variation_weight", "must be >= 0")
    require_positive(config, "eval.vp_pairs", "eval.step_size", "eval.num_strips")


__all__ = ["ConfigError", "METHODS", "PRESETS", "get_config", "validate"]

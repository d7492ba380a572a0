"""Traversal-discovery configs: `python -m train.traversal --config=configs/traversal.py:PRESET --workdir=DIR`.

The generator is a frozen VAE trained in-repo: the `train.vae` run in `vae.workdir`. If that directory
holds no run, `train.traversal` first trains one there with `vae.config` (the `plain` VAE preset; override
its fields on the command line as `--config.vae.config.total_steps=...`). Presets:
  potential        K = 5 potential MLPs + the pair classifier (Song et al., ICML 2023, the pretrained-VAE
                   trainer `lib/trainer_vae.py`): wave PDE, T = 5 steps, random reflection of the pair,
                   stochastic logits; traversals start at posterior means of data images. CPU budget
                   (minutes on 2 cores).
  linear           the standard baseline (Voynov & Babenko 2020): K linear directions trained with the
                   same classifier, in the same code path (classifier loss only).
  potential_paper, the official pretrained-VAE settings (`scripts/mnist.sh`): K = 16, D = 10 (T = 5),
  linear_paper     batch 256, Adam 1e-4, 10k iterations, z0 ~ N(0, I).
"""

from __future__ import annotations

import ml_collections

from configs import vae as vae_configs
from configs._common import logging_config, optim_config, preset_base, validate_logging, validate_optim
from jaxrep import files
from jaxrep.config_checks import ConfigError, require, require_choice, require_positive
from jaxrep.traversal import EQUATIONS, SPATIAL_OPERATORS

PRESETS = ("potential", "linear", "potential_paper", "linear_paper")
FAMILIES = ("potential", "linear")
STARTS = ("prior", "posterior")


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.preset = ""  # name of the preset this config came from
    config.seed = 0  # root PRNG seed: init, starting latents, per-example k / t* / reflection / logit noise
    config.batch_size = 256  # global batch of starting latents z0
    config.total_steps = 10_000  # optimizer updates (official pretrained-VAE runs: 10k)
    config.ema_decay = 0.0  # EMA of the weights used for evaluation; 0 evaluates the raw weights (official)
    config.num_devices = 0  # devices in the mesh; 0 means all devices

    config.vae = ml_collections.ConfigDict()
    config.vae.workdir = "workdirs/vae_plain"  # train.vae work directory of the frozen generator
    config.vae.train_if_missing = True  # train the generator with vae.config when vae.workdir holds no run
    config.vae.config = vae_configs.get_config("plain")  # the generator's train.vae config (plain CPU preset)

    config.traversal = ml_collections.ConfigDict()
    config.traversal.family = "potential"  # 'potential' (MLP potentials u_k) or 'linear' (directions baseline)
    config.traversal.num_potentials = 16  # K traversals (official pretrained-VAE runs: 16)
    config.traversal.num_steps = 5  # T, rollout length (official D // 2 with D = 10)
    config.traversal.start = "prior"  # z0: 'prior' N(0, I) (official) or 'posterior' (means of data images)
    config.traversal.num_start_images = 2048  # 'posterior': images of the VAE's grid encoded as starts
    config.traversal.equation = "wave"  # potential: PDE, 'wave', 'heat' or 'hamilton_jacobi'
    config.traversal.operator = "hessian_rowsum"  # potential: spatial operator ('hessian_rowsum' official)
    config.traversal.num_probes = 1  # potential: Hutchinson probes per point (operator 'hutchinson')
    config.traversal.width = 0  # potential: MLP width; 0 means the latent dimension (official)
    config.traversal.reflect = True  # show the classifier the pair mirrored through z0 half the time (official)
    config.traversal.classifier_weight = 1.0  # lambda_cls (official 1)
    config.traversal.pde_weight = 1.0  # potential: lambda_pde on L_ic + L_pde - L_var (official 1)
    config.traversal.variation_weight = 1.0  # potential: weight of L_var inside the flow loss (official 1)

    config.classifier = ml_collections.ConfigDict()
    config.classifier.features = (6, 16, 120)  # LeNet conv widths (official reconstructor)
    config.classifier.hidden = 84  # hidden Dense width
    config.classifier.stochastic_logits = True  # Gaussian noisy logits (official pretrained-VAE classifier)

    # Adam for potentials and classifier at the official 1e-4 (both), no warmup, no clipping (official: none).
    config.optim = optim_config(learning_rate=1e-4, warmup_steps=0, grad_clip=0.0)

    config.eval = ml_collections.ConfigDict()
    config.eval.vp_pairs = 500  # starting latents per traversal for the VP score
    config.eval.step_size = 1.0  # flow step of strips and VP pairs (training uses 1)
    config.eval.num_strips = 4  # strips written (K rows x T + 1 columns each)

    config.log_every = 100  # steps between metric logs
    config.logging = logging_config()
    config.checkpoint_every = 1000  # steps between checkpoints
    config.keep_checkpoints = 3  # checkpoints kept on disk
    return config


def get_config(preset: str = "potential") -> ml_collections.ConfigDict:
    config = preset_base(preset, PRESETS, base_config)
    config.traversal.family = preset.split("_")[0]
    if preset.endswith("_paper"):
        config.vae.workdir = "workdirs/vae_plain_paper"
        config.vae.config = vae_configs.get_config("plain_paper")
    else:
        # CPU budget: K = 5 (dSprites' factor count, as the from-scratch setting), batch 32, larger rate.
        # A VAE trained for minutes has holes in its prior (prior samples decode to faint blobs), so the
        # traversals start at posterior means of data images, as they do in the from-scratch setting.
        config.traversal.num_potentials = 5
        config.traversal.start = "posterior"
        config.batch_size = 32
        config.total_steps = 1000
        config.optim.learning_rate = 1e-3
        config.log_every = 50
        config.checkpoint_every = 500
        config.eval.vp_pairs = 200
    return config


def validate(config: ml_collections.ConfigDict, *, num_devices: int) -> None:
    """Checks the config before anything compiles; raises ConfigError naming the field."""
    require_positive(config, "batch_size", "total_steps", "log_every", "checkpoint_every", "keep_checkpoints",
                     "classifier.hidden", "eval.vp_pairs", "eval.step_size", "eval.num_strips")
    validate_logging(config)
    require(config.batch_size % num_devices == 0, "batch_size",
            f"{config.batch_size} is not divisible by the {num_devices} devices of the mesh")
    require(0.0 <= config.ema_decay < 1.0, "ema_decay", f"must be in [0, 1), got {config.ema_decay}")
    require(config.num_devices >= 0, "num_devices", "must be >= 0 (0: all devices)")
    validate_optim(config)
    traversal = config.traversal
    require_choice(config, "traversal.family", FAMILIES)
    require(traversal.num_potentials >= 2, "traversal.num_potentials",
            f"must be >= 2 (the classifier tells traversals apart), got {traversal.num_potentials}")
    require(traversal.num_steps >= 2, "traversal.num_steps", "must be >= 2 (pairs need two flow steps)")
    require_choice(config, "traversal.start", STARTS)
    require(traversal.num_start_images >= 1, "traversal.num_start_images", "must be >= 1")
    require_choice(config, "traversal.equation", EQUATIONS)
    require_choice(config, "traversal.operator", SPATIAL_OPERATORS)
    require(traversal.num_probes >= 1, "traversal.num_probes", "must be >= 1")
    require(traversal.width >= 0, "traversal.width", "must be >= 0 (0: the latent dimension)")
    for field in ("classifier_weight", "pde_weight", "variation_weight"):
        require(traversal[field] >= 0, f"traversal.{field}", "must be >= 0")
    require(len(config.classifier.features) >= 1 and all(f > 0 for f in config.classifier.features),
            "classifier.features", f"need positive conv widths, got {tuple(config.classifier.features)}")
    workdir = config.vae.workdir
    require(bool(workdir), "vae.workdir", "need the train.vae work directory of the generator")
    if config.vae.train_if_missing and not has_generator(config):
        require(config.vae.config.method == "plain", "vae.config.method",
                f"the generator is a plain VAE, got {config.vae.config.method!r}")
        vae_configs.validate(config.vae.config, num_devices=num_devices)
    else:
        require(has_generator(config), "vae.workdir",
                f"no VAE checkpoints in {workdir!r}; train the generator first with `python -m train.vae "
                f"--config=configs/vae.py:plain --workdir={workdir}` or set vae.train_if_missing")


def has_generator(config: ml_collections.ConfigDict) -> bool:
    """Whether `vae.workdir` holds checkpoints of a train.vae run."""
    return files.path(files.join(config.vae.workdir, "checkpoints")).is_dir()


__all__ = ["ConfigError", "FAMILIES", "PRESETS", "get_config", "has_generator", "validate"]

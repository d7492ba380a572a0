"""SiT flow-matching training configs: `--config=configs/diffusion.py:PRESET` with `--config.a.b=value`.

Presets:
  cpu  tiny SiT on procedural coloured shapes (32x32x3, pixel space); finishes in minutes on 2 cores.
  fmnist  the same SiT on Fashion-MNIST (32x32x1 padded, 10 classes; `apt install dataset-fashion-mnist` or
       data.path = a folder of its IDX files), 3000 steps: the setting of docs/results/alignment_fmnist.md.
  s2   SiT-S/2 on pre-encoded 32x32x4 latents (benchmark size).
  b2   SiT-B/2, the REPA paper's setting (ImageNet 256 latents, batch 256, AdamW 1e-4, EMA 0.9999).
  l2   SiT-L/2, the REPA paper's setting.
  xl2  SiT-XL/2, the REPA paper's setting.
  b2_512, xl2_512  the same at ImageNet 512: 64 x 64 x 4 latents, a 32 x 32 token grid (prepare with
       configs/prepare_latents.py:imagenet512); aligned variants read DINOv2 at 448 px (32 x 32 tokens).
  {cpu,fmnist,b2,l2,xl2,b2_512,xl2_512}_{repa,irepa,erw}  the same with representation alignment (`align.*`): REPA
       (MLP projector, lambda 0.5), iREPA (conv projector, spatially z-scored targets, lambda 1.0) or ERW (warmup
       stage, then a decaying lambda; RoPE and QK-norm). cpu_*, fmnist_*: the in-repo encoder of the data
       (train.encoder; made first, as a stage of its own, by train.diffusion); the others: DINOv2-B/14 from a
       weights file (docs/dinov2.md).
The latent presets read SD-VAE latents from `data.path`: records of train.prepare_latents
(`data.source='latent_records'`) or pre-encoded `.npy` latents (scaled by 0.18215).
"""

from __future__ import annotations

import ml_collections

from configs._common import (
    ACTIVATION_DTYPES,
    FACTOR_SOURCES,
    distributed_config,
    logging_config,
    preset_base,
    validate_logging,
)
from jaxrep import files
from jaxrep.align.erw import erw_initial_weight
from jaxrep.align.objective import METHODS as ALIGN_METHODS
from jaxrep.config_checks import ConfigError, require, require_choice, require_positive
from jaxrep.diffusion.interpolants import INTERPOLANTS, TIME_WEIGHTINGS
from jaxrep.diffusion.samplers import ODE_METHODS, SAMPLERS
from jaxrep.nn.attention import ATTENTION_IMPLS
from jaxrep.parallel import PARAM_SHARDINGS
from jaxrep.weights import hub
from jaxrep.weights.encoder import SOURCES as ENCODER_SOURCES

CPU_BASES = ("cpu", "fmnist")  # tiny pixel-space SiTs that train in minutes on a laptop CPU
ALIGNED_BASES = (*CPU_BASES, "b2", "l2", "xl2", "b2_512", "xl2_512")
ALIGNED_PRESETS = tuple(f"{base}_{method}" for base in ALIGNED_BASES for method in ALIGN_METHODS[1:])
PRESETS = (*CPU_BASES, "s2", "b2", "l2", "xl2", "b2_512", "xl2_512") + ALIGNED_PRESETS
SIT_OF_BASE = {"s2": "S/2", "b2": "B/2", "l2": "L/2", "xl2": "XL/2", "b2_512": "B/2", "xl2_512": "XL/2"}


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.preset = ""  # name of the preset this config came from
    config.seed = 0  # root PRNG seed: init, per-step noise/time/label-drop keys, data order
    config.batch_size = 256  # global batch over all devices and hosts
    config.total_steps = 400_000  # optimizer updates
    config.ema_decay = 0.9999  # EMA of the weights, used for sampling and evaluation
    config.num_devices = 0  # devices in the mesh; 0 means all devices of all processes
    config.param_sharding = "replicate"  # 'replicate' (data parallel) or 'fsdp' (params, EMA, Adam moments split
    # over the mesh's data axis; jaxrep.parallel.state_shardings)

    config.data = ml_collections.ConfigDict()
    config.data.source = "arrays"  # 'shapes32', 'dsprites', 'fashion_mnist', 'arrays' (user files), 'latent_records'
    config.data.path = ""  # 'arrays': (N, H, W, C) .npy (memory-mapped) or .npz; 'latent_records': the directory
    # written by train.prepare_latents (posterior moments, labels and image bytes in ArrayRecord shards);
    # 'fashion_mnist': the folder of its IDX files (empty: Debian's /usr/share/datasets/fashion-mnist)
    config.data.labels_path = ""  # 'arrays': (N,) int labels .npy; empty: 'labels' in the .npz or all 0
    config.data.num_classes = 1000  # class count (the null class id is num_classes)
    config.data.latent_scale = 0.18215  # SD-VAE scale: applied to posterior samples, undone before decoding
    config.data.latent_stats_path = ""  # iREPA: per-channel latents_scale/latents_bias file (.pt/.safetensors/.npz)
    # used instead of latent_scale: z = (x - bias) * scale
    config.data.num_workers = 0  # grain worker processes reading and decoding examples; 0: in the main process

    config.model = ml_collections.ConfigDict()
    config.model.preset = ""  # 'S/2', 'B/2', 'L/2', 'XL/2', or '' to use the fields below
    config.model.patch_size = 2  # patch size p (custom model)
    config.model.hidden_size = 384  # width (custom model)
    config.model.depth = 12  # number of blocks (custom model)
    config.model.num_heads = 6  # attention heads (custom model)
    config.model.mlp_ratio = 4.0  # MLP width / hidden size
    config.model.dtype = "float32"  # activation dtype: 'float32' or 'bfloat16' (params stay float32)
    config.model.use_rope = False  # 2-D rotary embedding of q and k in every block (ERW); head_dim % 4 == 0
    config.model.qk_norm = False  # per-head LayerNorm of q and k before attention (timm qk_norm, ERW --qk-norm)
    config.model.attention_impl = "xla"  # 'xla' (jax.nn.dot_product_attention), 'cudnn' (NVIDIA GPUs) or
    # 'cpu_layout' (heads-major attention dots: faster on XLA:CPU from ~256 tokens); the same parameters and
    # outputs (jaxrep.nn.attention)

    config.diffusion = ml_collections.ConfigDict()
    config.diffusion.path = "linear"  # interpolant: 'linear' (SiT/REPA default) or 'gvp'
    config.diffusion.time_weighting = "uniform"  # training t distribution: 'uniform' or 'lognormal'
    config.diffusion.class_dropout_prob = 0.1  # label dropout for classifier-free guidance

    config.optim = ml_collections.ConfigDict()
    config.optim.learning_rate = 1e-4  # AdamW peak rate (REPA: 1e-4 constant)
    config.optim.warmup_steps = 0  # linear warmup steps (REPA: none)
    config.optim.b1 = 0.9  # Adam beta1
    config.optim.b2 = 0.999  # Adam beta2
    config.optim.eps = 1e-8  # Adam epsilon
    config.optim.weight_decay = 0.0  # decoupled weight decay (REPA: 0)
    config.optim.grad_clip = 1.0  # global-norm clipping; 0 disables

    config.sample = ml_collections.ConfigDict()
    config.sample.sampler = "ode"  # 'ode' or 'sde' (Euler-Maruyama)
    config.sample.ode_method = "euler"  # 'euler' or 'heun' (ode sampler)
    config.sample.num_steps = 50  # integration steps (REPA preview: Euler 50; paper: SDE 250)
    config.sample.cfg_scale = 4.0  # guidance scale; <= 1 disables (REPA guides only above 1; preview: 4.0)
    config.sample.guidance_low = 0.0  # guidance applies for t in [low, high]
    config.sample.guidance_high = 1.0  # (REPA final eval: 0.7)
    config.sample.num_images = 64  # images in each sample grid

    config.log_every = 100  # steps between metric logs
    config.checkpoint_every = 10_000  # steps between checkpoints
    config.keep_checkpoints = 3  # checkpoints kept on disk
    config.sample_every = 50_000  # steps between EMA sample grids (0: only at the end)

    config.distributed = distributed_config()
    config.logging = logging_config()

    config.align = ml_collections.ConfigDict()
    config.align.method = "none"  # representation alignment: 'none', 'repa', 'irepa' or 'erw'
    config.align.depth = 8  # 1-based SiT block whose output is aligned (REPA: 8 for L/XL, 4 for B; ERW XL: 14)
    config.align.coef = 0.5  # lambda (REPA 0.5, iREPA 1.0); erw: the initial weight c0 of the decaying lambda
    config.align.projector_dim = 2048  # hidden width of the MLP projector (repa, erw)
    config.align.conv_kernel = 3  # kernel side of the conv projector (irepa)
    config.align.spatial_norm_gamma = 0.6  # irepa: share of the per-image mean token removed by the z-score
    config.align.diagnostics_every = 0  # steps between CKA / mutual k-NN / LDS / effective-rank logs; 0: never
    config.align.encoder = ml_collections.ConfigDict()
    config.align.encoder.source = "checkpoint"  # 'checkpoint' (in-repo orbax encoder), 'dinov2' (weights file);
    # controls: 'random' (the in-repo encoder's architecture, randomly initialised), 'hog' (HOG cells, one per SiT
    # patch; align.encoder.path unused)
    config.align.encoder.path = "workdirs/encoder_shapes32"  # checkpoint dir (made first if missing) or DINOv2 file;
    # several target encoders: a comma-separated list, each with its own projector (REPA's list of encoders)
    config.align.encoder.preset = "B/14"  # dinov2: ViT preset of the file ('S/14', ..., 'g/14'); one or one per path
    config.align.encoder.image_size = 0  # encoder input side; 0: the checkpoint's training size, 224 for DINOv2,
    # the data's image side for HOG
    config.align.encoder.dtype = "float32"  # encoder activation dtype: 'float32' or 'bfloat16' (params float32)
    config.align.encoder.images_path = ""  # latent data: (N, H, W, 3) uint8 .npy of the raw images behind data.path
    config.align.erw = ml_collections.ConfigDict()
    config.align.erw.warmup_steps = 100_000  # ERW phase 1 steps (counted in total_steps)
    config.align.erw.l2r_depth = 4  # blocks trained in the warmup and transplanted ("L2R" region)
    config.align.erw.half_life = 50_000  # steps for the phase-2 lambda to halve
    config.align.erw.warmup_coef = 0.5  # scale of the warmup alignment loss (ERW's --proj-coeff)
    config.align.erw.official_warmup_loss = False  # True: the released code's buggy last-sample / B warmup loss
    return config


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    config = preset_base(preset, PRESETS, base_config)
    base, _, method = preset.rpartition("_") if preset.rsplit("_", 1)[-1] in ALIGN_METHODS else (preset, "", "")
    if base in CPU_BASES:
        config.data.source = "shapes32"
        config.data.num_classes = 3
        config.model.update(patch_size=4, hidden_size=128, depth=4, num_heads=4)
        config.batch_size = 32
        config.total_steps = 2000
        config.optim.learning_rate = 2e-3  # a tiny model tolerates (and needs) a larger rate
        config.optim.warmup_steps = 100
        config.diffusion.time_weighting = "lognormal"  # REPA's option; learns faster than uniform here
        config.ema_decay = 0.99
        config.log_every = 50
        config.checkpoint_every = 500
        config.sample_every = 0
        config.sample.cfg_scale = 3.0
        config.sample.ode_method = "heun"
        config.sample.num_steps = 25
        if base == "fmnist":
            config.data.source = "fashion_mnist"
            config.data.num_classes = 10
            config.total_steps = 3000
    else:
        config.model.preset = SIT_OF_BASE[base]
    if method:
        _add_alignment(config, base, method)
    return config


def _add_alignment(config: ml_collections.ConfigDict, base: str, method: str) -> None:
    """Alignment settings of the `{base}_{method}` presets (paper values for b2/xl2, scaled down for cpu)."""
    align = config.align
    align.method = method
    align.coef = _alignment_coef(base, method)
    align.diagnostics_every = 100 if base in CPU_BASES else 5000  # a probe forward: ~0.3 % of the steps' time
    if method == "erw" and base not in CPU_BASES:
        # ERW's SiT: RoPE (`ERW:train.py` --use_rope, default True) and QK-norm (`ERW:README.md`: the released
        # best.pt is "With QK-Norm"; train.py's --qk-norm defaults to False). cpu_erw keeps the plain SiT its
        # measured study figures (README, docs/results/alignment.md) were obtained with.
        config.model.update(use_rope=True, qk_norm=True)
    if base in CPU_BASES:
        # Tiny SiT (4 blocks of width 128) and the in-repo encoder (64-d tokens on an 8 x 8 grid = the SiT
        # grid): align after block 2 (REPA aligns about a third of the way up; half here, with 4 blocks).
        align.depth = 2
        align.projector_dim = 256
        align.encoder.source = "checkpoint"
        align.encoder.path = f"workdirs/encoder_{config.data.source}"
        # ERW: warm up block 1, align block 2 after it; warmup and half-life both 1/6 of the run, the
        # proportions of ERW's XL recipe (100K warmup, 50K half-life, 300K steps).
        align.erw.l2r_depth = 1
        align.erw.warmup_steps = config.total_steps // 6
        align.erw.half_life = config.total_steps // 6
        return
    # DINOv2-B/14 at 224 px -> 16 x 16 tokens = the SiT/2 grid on 32 x 32 latents (no token resize); at 512 px,
    # 448 px -> 32 x 32 tokens = the SiT/2 grid on 64 x 64 latents (REPA's 512 setting).
    align.encoder.source = "dinov2"
    align.encoder.path = ""  # the user's dinov2_vitb14 .pth or facebook/dinov2-base .safetensors
    align.encoder.preset = "B/14"
    align.encoder.image_size = 448 if base.endswith("_512") else 224
    size = SIT_OF_BASE[base].split("/")[0]
    align.depth = 4 if size == "B" else 8  # REPA/iREPA: 4 for SiT-B, 8 for SiT-L/XL
    if method == "erw":
        # ERW README recipe for XL: 100K warmup of 4 blocks, alignment at block 14, 300K steps. For B and L (no
        # published recipe): the 4-block warmup and ERW's argparse default depth 8.
        align.erw.l2r_depth = 4
        align.erw.warmup_steps = 100_000
        align.erw.half_life = 50_000
        align.depth = 14 if size == "XL" else 8
        config.total_steps = 300_000


def _alignment_coef(base: str, method: str) -> float:
    """lambda of the `{base}_{method}` preset: REPA 0.5, iREPA 1.0; ERW's c0 by the SiT's name
    (`jaxrep.align.erw.erw_initial_weight`: XL 6.0, L 3.0, else 1.0), 1.0 for the cpu SiTs."""
    if method in ("repa", "irepa"):
        return {"repa": 0.5, "irepa": 1.0}[method]
    return 1.0 if base in CPU_BASES else erw_initial_weight(f"SiT-{SIT_OF_BASE[base]}")


def image_size_of(config: ml_collections.ConfigDict) -> int | None:
    return {"shapes32": 32, "dsprites": 64, "fashion_mnist": 32}.get(config.data.source)


def validate(config: ml_collections.ConfigDict, *, num_devices: int, image_size: int | None = None,
             check_files: bool = True) -> None:
    """Checks the config before anything compiles; raises ConfigError naming the field.

    Args:
      num_devices: devices the mesh will use.
      image_size: spatial size of the data (for 'arrays', read from the file by the caller).
      check_files: whether the data, statistics, encoder and image files must exist (False for an
        ahead-of-time compile from shapes alone, `train.compile_check`).
    """
    require_positive(config, "batch_size", "total_steps", "log_every", "checkpoint_every", "keep_checkpoints",
                     "model.mlp_ratio", "sample.num_steps", "sample.num_images")
    require(config.batch_size % num_devices == 0, "batch_size",
            f"{config.batch_size} is not divisible by the {num_devices} devices of the mesh")
    validate_logging(config)
    require_choice(config, "param_sharding", PARAM_SHARDINGS)
    require(config.optim.learning_rate > 0, "optim.learning_rate", f"must be > 0, got {config.optim.learning_rate}")
    require(config.optim.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0")
    require(config.optim.eps > 0, "optim.eps", f"must be > 0 (Adam divides by sqrt(v) + eps), got {config.optim.eps}")
    require(0 <= config.optim.b1 < 1 and 0 <= config.optim.b2 < 1, "optim.b1",
            f"Adam betas must be in [0, 1), got b1={config.optim.b1}, b2={config.optim.b2}")
    require(config.optim.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    require(config.optim.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0 disables clipping)")
    require(0.0 <= config.ema_decay < 1.0, "ema_decay", f"must be in [0, 1), got {config.ema_decay}")
    require(0.0 <= config.diffusion.class_dropout_prob < 1.0, "diffusion.class_dropout_prob", "must be in [0, 1)")
    require(config.sample_every >= 0, "sample_every", "must be >= 0 (0: only at the end)")
    require(config.num_devices >= 0, "num_devices", "must be >= 0 (0: all devices)")
    require_choice(config, "data.source", ("shapes32", "dsprites", "fashion_mnist", "arrays", "latent_records"))
    require_choice(config, "model.dtype", ACTIVATION_DTYPES)
    require_choice(config, "model.attention_impl", ATTENTION_IMPLS)
    if config.model.attention_impl == "cudnn":
        import jax

        require(jax.default_backend() == "gpu", "model.attention_impl",
                f"'cudnn' runs on NVIDIA GPUs only; this backend is {jax.default_backend()!r} (use 'xla')")
    require_choice(config, "diffusion.path", tuple(INTERPOLANTS))
    require_choice(config, "diffusion.time_weighting", TIME_WEIGHTINGS)
    require_choice(config, "sample.sampler", SAMPLERS)
    require_choice(config, "sample.ode_method", ODE_METHODS)
    if check_files:
        require(config.data.source != "arrays" or files.path(config.data.path).is_file(), "data.path",
                f"data.source='arrays' needs a .npy/.npz file of images or latents; no such file {config.data.path!r}")
        require(config.data.source != "latent_records"
                or files.path(files.join(config.data.path, "manifest.json")).is_file(), "data.path",
                f"data.source='latent_records' needs a directory written by train.prepare_latents; no manifest.json "
                f"in {config.data.path!r}")
        require(not config.data.latent_stats_path or files.path(config.data.latent_stats_path).is_file(),
                "data.latent_stats_path", f"no such file {config.data.latent_stats_path!r}")
    require(config.data.latent_scale > 0, "data.latent_scale", f"must be > 0, got {config.data.latent_scale}")
    require(config.data.num_workers >= 0, "data.num_workers", "must be >= 0 (0: no worker processes)")
    require(config.data.num_classes >= 1, "data.num_classes", "must be >= 1")
    require(0.0 <= config.sample.guidance_low <= config.sample.guidance_high <= 1.0, "sample.guidance_low",
            "need 0 <= guidance_low <= guidance_high <= 1")
    if config.model.preset:
        require_choice(config, "model.preset", ("S/2", "B/2", "L/2", "XL/2"))
    else:
        require_positive(config, "model.patch_size", "model.hidden_size", "model.depth", "model.num_heads")
        require(config.model.hidden_size % config.model.num_heads == 0, "model.hidden_size",
                f"{config.model.hidden_size} is not divisible by model.num_heads={config.model.num_heads}")
        require(config.model.hidden_size % 4 == 0, "model.hidden_size",
                f"{config.model.hidden_size} is not divisible by 4 (2-D sin-cos position embedding)")
        require(not config.model.use_rope or (config.model.hidden_size // config.model.num_heads) % 4 == 0,
                "model.use_rope", f"2-D RoPE needs a head dim divisible by 4, got "
                f"{config.model.hidden_size // config.model.num_heads}")
    validate_alignment(config, check_files)
    validate_image_size(config, image_size or image_size_of(config))


def validate_image_size(config: ml_collections.ConfigDict, image_size: int | None) -> None:
    """The check of `validate` that needs the data's spatial size (None: not known yet, nothing to check)."""
    if image_size is None:
        return
    patch_size = int(config.model.preset.split("/")[1]) if config.model.preset else config.model.patch_size
    require(image_size % patch_size == 0, "model.patch_size",
            f"image size {image_size} is not divisible by the patch size {patch_size}")


def _sit_depth(config: ml_collections.ConfigDict) -> int:
    if config.model.preset:
        return {"S": 12, "B": 12, "L": 24, "XL": 28}[config.model.preset.split("/")[0]]
    return config.model.depth


def encoder_specs(config: ml_collections.ConfigDict) -> list[tuple[str, str]]:
    """(path, preset) of each target encoder: `align.encoder.path` is one path or a comma-separated list (REPA's
    `--enc-type a,b`), `align.encoder.preset` one preset for all or one per path."""
    paths = [path.strip() for path in config.align.encoder.path.split(",")]
    presets = [preset.strip() for preset in config.align.encoder.preset.split(",")]
    require(len(presets) in (1, len(paths)), "align.encoder.preset",
            f"{len(presets)} presets for {len(paths)} encoder paths; give one preset or one per path")
    return list(zip(paths, presets * len(paths) if len(presets) == 1 else presets))


def validate_alignment(config: ml_collections.ConfigDict, check_files: bool = True) -> None:
    """The `align.*` checks of `validate` (files included unless `check_files` is False: a missing encoder fails
    before compiling)."""
    require_choice(config, "align.method", ALIGN_METHODS)
    align = config.align
    if align.method == "none":
        return
    depth = _sit_depth(config)
    require(1 <= align.depth <= depth, "align.depth", f"must be in [1, {depth}] (the SiT has {depth} blocks), "
            f"got {align.depth}")
    require(align.coef >= 0, "align.coef", f"must be >= 0, got {align.coef}")
    require(align.diagnostics_every >= 0, "align.diagnostics_every", "must be >= 0 (0: never)")
    require_positive(config, "align.projector_dim", "align.conv_kernel")
    require(align.conv_kernel % 2 == 1, "align.conv_kernel", f"must be odd (SAME padding), got {align.conv_kernel}")
    require_choice(config, "align.encoder.source", ENCODER_SOURCES)
    require_choice(config, "align.encoder.dtype", ACTIVATION_DTYPES)
    require(align.encoder.image_size >= 0, "align.encoder.image_size", "must be >= 0 (0: the encoder's own size)")
    specs = [] if align.encoder.source == "hog" else encoder_specs(config)
    for path, preset in specs:
        if align.encoder.source == "dinov2":
            require(preset in ("S/14", "B/14", "L/14", "g/14"), "align.encoder.preset",
                    f"must be one of ('S/14', 'B/14', 'L/14', 'g/14') for each encoder, got {preset!r}")
            require(not check_files or hub.is_hub_name(path) or (bool(path) and files.path(path).is_file()),
                    "align.encoder.path", f"no DINOv2 weights file at {path!r} (a .safetensors/.pth, or a Hugging "
                    "Face name such as hf://facebook/dinov2-base; see docs/dinov2.md)")
        else:
            require(bool(path), "align.encoder.path", "empty; name the encoder checkpoint directory")
            require(files.path(path).exists() or (len(specs) == 1 and config.data.source in FACTOR_SOURCES),
                    "align.encoder.path", f"no encoder checkpoint at {path!r}; train one with `python -m "
                    "train.encoder` (train.diffusion does so first for one encoder on shapes32, dsprites and "
                    "fashion_mnist) or use align.encoder.source='dinov2'")
            require(not files.path(path).is_file(), "align.encoder.path",
                    f"{path!r} is a file; the in-repo encoder is a checkpoint directory (a DINOv2 file needs "
                    f"align.encoder.source='dinov2')")
    if align.encoder.source == "dinov2":
        require(align.encoder.image_size % 14 == 0, "align.encoder.image_size",
                f"{align.encoder.image_size} is not a multiple of the DINOv2 patch size 14")
    require(not check_files or not align.encoder.images_path or files.path(align.encoder.images_path).is_file(),
            "align.encoder.images_path", f"no such file {align.encoder.images_path!r}")
    if align.method == "erw":
        require(1 <= align.erw.l2r_depth <= depth, "align.erw.l2r_depth",
                f"must be in [1, {depth}], got {align.erw.l2r_depth}")
        require(0 < align.erw.warmup_steps < config.total_steps, "align.erw.warmup_steps",
                f"must be in (0, total_steps={config.total_steps}), got {align.erw.warmup_steps}")
        require(align.erw.half_life > 0, "align.erw.half_life", "must be > 0")
        require(align.erw.warmup_coef > 0, "align.erw.warmup_coef", "must be > 0")


__all__ = ["ALIGN_METHODS", "ConfigError", "PRESETS", "get_config", "validate"]

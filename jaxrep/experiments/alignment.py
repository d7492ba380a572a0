"""Representation alignment (REPA, iREPA, ERW) in SiT training: what `train.diffusion` builds from `config.align`.

- `build_alignment`: the frozen target encoder (`align.encoder.source`: the in-repo checkpoint, made
  beforehand by `train.encoder` or as a prerequisite stage of `train.diffusion`, or a DINOv2 file), the
  projector, the loss term, and `prepare_batch`, which adds the targets `batch["align_target"]` (B, N, D_enc)
  to every global batch with a jitted, batch-sharded encoder forward *before* the train step. The encoder
  params are replicated on the mesh, never part of
  the train state, so the optimizer cannot see them and the step cannot differentiate into them.
- Encoder inputs: pixel-space data feeds the training images themselves ([-1, 1] -> [0, 1] RGB -> ImageNet
  mean/std -> bicubic resize to `align.encoder.image_size`); latent data (the b2/xl2 presets) feeds the raw
  uint8 images of `align.encoder.images_path`, row-aligned with the latents (REPA's loader yields both).
  When the encoder's token grid differs from the SiT grid the tokens are resized bilinearly
  (`targets.resize_token_grid`; e.g. 8 x 8 encoder tokens for SiT/2 on 32 px -> 16 x 16).
- ERW's transfer (`erw_transfer`): the warmup stage's embedders and first `l2r_depth` blocks (and the
  projector) go into the fresh full model (`transplant_blocks`); the EMA restarts from those weights, the
  optimizer restarts fresh, the global step continues at `align.erw.warmup_steps`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from configs import diffusion as diffusion_configs
from configs import encoder as encoder_configs
from jaxrep import files, parallel
from jaxrep.align.diagnostics import alignment_diagnostics
from jaxrep.align.encoder import FrozenEncoder, make_target_fn
from jaxrep.align.erw import transplant_blocks
from jaxrep.align.objective import AlignmentTerm, Projector, make_alignment_term, make_projector
from jaxrep.config_checks import ConfigError
from jaxrep.diffusion.interpolants import INTERPOLANTS
from jaxrep.diffusion.latents import LatentNormalization, clean_input
from jaxrep.diffusion.objective import draw_training_noise
from jaxrep.experiments.encoder import train_encoder
from jaxrep.experiments.prerequisites import Prerequisite, factor_network
from jaxrep.nn.sit import SiT
from jaxrep.train_state import TrainState
from jaxrep.training import example_keys
from jaxrep.weights.encoder import abstract_encoder, load_encoder

ERW_WARMUP_DIR = "erw_warmup"  # work-directory subfolder of ERW's warmup stage (checkpoints, metrics)
ENCODER_IMAGE_KEY = "encoder_image"


class WithEncoderImages:
    """A source whose examples also carry the raw uint8 image the encoder sees (`encoder_image`).

    Args:
      source: random-access source of {"image": latents, "label"}.
      path: (N, H, W, 3) uint8 `.npy`, row i = the image encoded as latent i (memory-mapped).
    """

    def __init__(self, source, path: str):
        if not files.path(path).is_file():
            raise ConfigError(f"align.encoder.images_path: no such file {path!r}")
        self._source = source
        self._images = np.load(files.local_copy(path), mmap_mode="r", allow_pickle=False)
        if self._images.ndim != 4 or self._images.shape[-1] != 3:
            raise ConfigError(f"align.encoder.images_path: expected (N, H, W, 3) images, got {self._images.shape}")
        if len(self._images) != len(source):
            raise ConfigError(f"align.encoder.images_path: {len(self._images)} images for {len(source)} latents")

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self._source.image_shape)

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict:
        return {**self._source[index], ENCODER_IMAGE_KEY: np.asarray(self._images[int(index)])}


def with_encoder_images(source, config):
    """`source`, wrapped by `WithEncoderImages` when the config names raw images for the encoder."""
    if config.align.method != "none" and config.align.encoder.images_path:
        return WithEncoderImages(source, config.align.encoder.images_path)
    return source


def encoder_prerequisites(config) -> list[Prerequisite]:
    """The in-repo target encoder an aligned run trains first when `align.encoder.path` holds none: one encoder
    (source 'checkpoint' or 'random') of a run on data it is defined on (configs/encoder.py's presets)."""
    specs = diffusion_configs.encoder_specs(config)
    if (config.align.method == "none" or config.align.encoder.source not in ("checkpoint", "random")
            or len(specs) > 1 or config.data.source not in encoder_configs.PRESETS):
        return []  # validation has checked that several encoders all exist
    return [factor_network("align.encoder.path", "train.encoder", "configs/encoder.py", encoder_configs.get_config,
                           train_encoder, config.data, specs[0][0])]


def require_encoder(config) -> None:
    """ConfigError naming what makes the encoder when `align.encoder.path` holds none (builders never train:
    `train.diffusion` runs `encoder_prerequisites` first)."""
    specs = diffusion_configs.encoder_specs(config)
    if config.align.encoder.source not in ("checkpoint", "random") or len(specs) > 1:
        return
    missing = [prerequisite for prerequisite in encoder_prerequisites(config) if prerequisite.missing()]
    if missing:
        raise ConfigError(f"align.encoder.path: no encoder checkpoint at {specs[0][0]!r}; make it first with "
                          f"`{missing[0].command}` (train.diffusion does so itself)")
    if not files.path(specs[0][0]).exists():
        raise ConfigError(f"align.encoder.path: no encoder checkpoint at {specs[0][0]!r}; train one with "
                          f"`python -m train.encoder` or use a DINOv2 file (align.encoder.source='dinov2')")


@dataclasses.dataclass
class Alignment:
    """Everything the alignment method adds to an experiment. With several target encoders (a comma-separated
    `align.encoder.path`), `encoder`, `encoder_params`, `projector`, the projector params and the targets are
    tuples with one entry per encoder, and the loss averages over them (`jaxrep.align.objective.projected_loss`)."""

    encoder: FrozenEncoder | tuple[FrozenEncoder, ...]
    encoder_params: Any  # replicated on the mesh; never in the train state
    projector: Projector
    term: AlignmentTerm
    targets: Callable[[Any, jax.Array], Any]  # jitted (encoder_params, images) -> (B, N, D_enc) (or a tuple)
    image_key: str  # batch entry the encoder reads: "image" or "encoder_image"

    def prepare_batch(self, batch: dict) -> dict:
        """Adds `align_target` (B, N, D_enc); drops the raw encoder images (the step never needs them)."""
        target = self.targets(self.encoder_params, batch[self.image_key])
        return {**{k: v for k, v in batch.items() if k != ENCODER_IMAGE_KEY}, "align_target": target}

    def init_projector(self, key: jax.Array, model: SiT) -> Any:
        """Projector params for the tokens of `model`; the key is folded so the SiT init is the vanilla one."""
        tokens = jnp.zeros((1, model.num_tokens, model.hidden_size), jnp.float32)
        if isinstance(self.projector, tuple):
            return tuple(projector.init(jax.random.fold_in(key, 1 + index), tokens)["params"]
                         for index, projector in enumerate(self.projector))
        return self.projector.init(jax.random.fold_in(key, 1), tokens)["params"]


def hog_encoder(image_size: int, model: SiT) -> FrozenEncoder:
    """HOG with one cell per SiT patch of an `image_size` image (the pixels each token covers)."""
    if not image_size or image_size % model.grid_size:
        raise ConfigError(f"align.encoder.image_size: HOG needs an image side that the {model.grid_size}x"
                          f"{model.grid_size} token grid divides (the raw images' side on latent data), got "
                          f"{image_size}")
    return load_encoder("hog", "", image_size=image_size, cell_size=image_size // model.grid_size)


def encoder_image_key(config, image_shape: tuple[int, ...]) -> str:
    """The batch entry the alignment encoder reads: the training images, or the raw images behind latents."""
    if config.align.encoder.images_path or config.data.source == "latent_records":
        return ENCODER_IMAGE_KEY
    if image_shape[-1] not in (1, 3):
        raise ConfigError(f"align.encoder.images_path: the training data has {image_shape[-1]} channels "
                          f"(latents?); give the raw (N, H, W, 3) uint8 images the encoder should see")
    return "image"


def build_alignment(config, model: SiT, image_shape: tuple[int, ...], mesh: jax.sharding.Mesh, *,
                    abstract: bool = False) -> Alignment | None:
    """The alignment pieces for `config.align`, or None for align.method='none'. `abstract`: encoder params as
    sharded `jax.ShapeDtypeStruct`s and no file read or trained (`jaxrep.weights.encoder.abstract_encoder`), for an
    ahead-of-time compile."""
    align = config.align
    if align.method == "none":
        return None
    image_key = encoder_image_key(config, image_shape)
    if not abstract:
        require_encoder(config)
    grid_hw = (model.grid_size, model.grid_size)
    if align.encoder.source == "hog":
        encoders = (hog_encoder(align.encoder.image_size or (image_shape[0] if image_key == "image" else 0), model),)
    else:
        build = abstract_encoder if abstract else load_encoder
        encoders = tuple(build(align.encoder.source, path, preset=preset, image_size=align.encoder.image_size,
                               dtype=jnp.dtype(align.encoder.dtype))
                         for path, preset in diffusion_configs.encoder_specs(config))
    projectors = tuple(make_projector(align.method, out_dim=encoder.width, hidden_dim=align.projector_dim,
                                      kernel_size=align.conv_kernel, grid_hw=grid_hw, dtype=model.dtype)
                       for encoder in encoders)
    gamma = align.spatial_norm_gamma if align.method == "irepa" else None
    target_fns = [make_target_fn(encoder, grid_hw=grid_hw, spatial_norm_gamma=gamma) for encoder in encoders]
    replicated, batch_sharded = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
    one = lambda items: items[0] if len(encoders) == 1 else tuple(items)  # noqa: E731  (one encoder: no tuples)
    projector = one(projectors)
    term = make_alignment_term(align.method, projector=projector, depth=align.depth, coef=align.coef,
                               erw_warmup_steps=align.erw.warmup_steps, erw_half_life=align.erw.half_life,
                               total_steps=config.total_steps)
    all_targets = (target_fns[0] if len(encoders) == 1 else
                   lambda params, images: tuple(fn(p, images) for fn, p in zip(target_fns, params)))
    targets = jax.jit(all_targets, in_shardings=(replicated, batch_sharded), out_shardings=batch_sharded)
    encoder_params = one([encoder.params for encoder in encoders])
    abstract_param = lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=replicated)  # noqa: E731
    encoder_params = (jax.tree.map(abstract_param, encoder_params) if abstract
                      else jax.device_put(encoder_params, replicated))
    return Alignment(one(encoders), encoder_params, projector, term, targets, image_key)


def erw_transfer(warmup_params: Any, fresh_state: TrainState, tx, *, l2r_depth: int, warmup_steps: int,
                 mesh: jax.sharding.Mesh) -> TrainState:
    """ERW's phase-2 start state: fresh full model with the warmed-up L2R region and projector copied in.

    Copies the warmup *model* weights (not its EMA), as `ERW:train.py` loads `warmup_ckpt['model']`; the
    EMA restarts as a copy of the transplanted weights, the optimizer state is fresh (ERW does not transfer
    it), and the step continues at `warmup_steps` (the schedule lambda(s) and per-step keys use the global
    step). The root key stays the fresh state's.
    """

    @jax.jit
    def transfer(warm, fresh):
        sit = transplant_blocks(warm["sit"], fresh.params["sit"], num_blocks=l2r_depth)
        params = {**fresh.params, "sit": sit, "projector": warm["projector"]}
        return fresh.replace(step=jnp.asarray(warmup_steps, jnp.int32), params=params,
                             ema_params=jax.tree.map(jnp.copy, params), opt_state=tx.init(params))

    state = transfer(warmup_params, fresh_state)
    return jax.device_put(state, parallel.shardings_of(fresh_state))


def diagnostics_hook(model: SiT, alignment: Alignment, config, probe_batch: dict,
                     normalization: LatentNormalization) -> Callable[[TrainState, int], dict]:
    """hook(state, step) -> `jaxrep.align.diagnostics.alignment_diagnostics` of the aligned block's tokens on a
    fixed probe batch (a prepared global batch): x_t from a fixed key with the run's path and time weighting, no
    label dropout, against the targets the loss sees (the first encoder's, spatially normalised for iREPA)."""
    interpolant = INTERPOLANTS[config.diffusion.path]
    grid_hw = (model.grid_size, model.grid_size)
    target = probe_batch["align_target"]
    target = target[0] if isinstance(target, tuple) else target
    batch_size = probe_batch["label"].shape[0]
    keys = example_keys(jax.random.key_data(jax.random.key(config.seed + 1)), jnp.int32(0), 0, batch_size)

    @jax.jit
    def probe(params, batch, target):
        x = clean_input(batch, keys, normalization)
        t, noise, _ = draw_training_noise(keys, x.shape[1:], time_weighting=config.diffusion.time_weighting,
                                          class_dropout_prob=0.0, path=config.diffusion.path)
        x_t, _ = interpolant(x, noise, t)
        _, hidden = model.apply({"params": params["sit"]}, x_t, t, batch["label"], hidden_at=alignment.term.depth)
        return alignment_diagnostics(hidden, target, grid_hw)

    inputs = {key: value for key, value in probe_batch.items() if key != "align_target"}
    return lambda state, step: probe(state.params, inputs, target)

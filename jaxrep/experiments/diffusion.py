"""Train a SiT flow-matching model: `python -m train.diffusion --config=configs/diffusion.py:cpu --workdir=DIR`.

Everything the run produces goes to the work directory: `checkpoints/` (orbax; resumed automatically),
`metrics.jsonl`, `tensorboard/`, `samples_<step>.png` (EMA samples) and `config.json`.

Representation alignment (`align.method` repa/irepa/erw, presets `cpu_repa`, `b2_irepa`, ...): see
train/alignment.py. ERW runs its warmup stage first, in `erw_warmup/` of the work directory (its own
checkpoints and metrics, resumed like the main stage), then the main stage from the transplanted weights.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from configs import diffusion as diffusion_configs
from jaxrep import parallel
from jaxrep.align.objective import make_erw_warmup_loss
from jaxrep.data import ArraySource, ColoredShapes, DSprites, make_dataset, make_iterator
from jaxrep.data.fashion_mnist import DEBIAN_DIR as FASHION_MNIST_DIR
from jaxrep.data.fashion_mnist import FashionMNIST, MissingDatasetError
from jaxrep.data.latent_records import DatasetError, LatentRecordSource
from jaxrep.diffusion import classifier_free_guidance, ode_sample, sde_sample
from jaxrep.diffusion.latents import LatentNormalization
from jaxrep.diffusion.objective import make_diffusion_loss
from jaxrep.experiments.alignment import (
    ERW_WARMUP_DIR,
    build_alignment,
    diagnostics_hook,
    encoder_prerequisites,
    erw_transfer,
    with_encoder_images,
)
from jaxrep.experiments.prerequisites import Prerequisite
from jaxrep.nn.sit import SiT, sit_preset
from jaxrep.run import loop
from jaxrep.run.checkpoint import Checkpointer
from jaxrep.run.logging import Media, save_image_grid
from jaxrep.run.workdir_lock import locks_workdir
from jaxrep.training import NonFiniteLossError, create_train_state, make_optimizer, make_train_step
from jaxrep.weights.autoencoder_kl import load_latent_stats

# Errors that mean bad input or a run that cannot go on (the command line prints them as one line).
EXPECTED_ERRORS = (NonFiniteLossError, MissingDatasetError, DatasetError)


def build_source(config) -> Any:
    if config.data.source == "shapes32":
        return ColoredShapes()
    if config.data.source == "dsprites":
        return DSprites()
    if config.data.source == "fashion_mnist":  # the train split (60,000) of the IDX files in data.path
        return FashionMNIST(config.data.path or FASHION_MNIST_DIR)
    if config.data.source == "latent_records":  # the alignment encoder reads the stored image bytes
        return LatentRecordSource(config.data.path, with_images=config.align.method != "none")
    return ArraySource(config.data.path, config.data.labels_path or None)


def build_model(config, image_shape: tuple[int, ...]) -> SiT:
    height, _, channels = image_shape
    common = dict(input_size=height, in_channels=channels, num_classes=config.data.num_classes,
                  mlp_ratio=config.model.mlp_ratio, dtype=jnp.dtype(config.model.dtype),
                  use_rope=config.model.use_rope, qk_norm=config.model.qk_norm,
                  attention_impl=config.model.attention_impl)
    if config.model.preset:
        return sit_preset(config.model.preset, **common)
    return SiT(patch_size=config.model.patch_size, hidden_size=config.model.hidden_size, depth=config.model.depth,
               num_heads=config.model.num_heads, **common)


def init_params(model: SiT, key: jax.Array, image_shape: tuple[int, ...]) -> dict:
    x = jnp.zeros((1, *image_shape), jnp.float32)
    return {"sit": model.init(key, x, jnp.zeros((1,)), jnp.zeros((1,), jnp.int32))["params"]}


def make_sampler(model: SiT, config):
    """sample(params, labels (N,), key) -> images (N, H, W, C): EMA sampling with CFG (pure, jit-able)."""

    def sample(params, labels, key):
        noise_key, sde_key = jax.random.split(key)
        shape = (labels.shape[0], model.input_size, model.input_size, model.in_channels)
        noise = jax.random.normal(noise_key, shape)
        model_fn = lambda x, t, y: model.apply({"params": params["sit"]}, x, t, y)
        velocity_fn = classifier_free_guidance(
            model_fn, labels, null_label=model.num_classes, scale=config.sample.cfg_scale,
            interval=(config.sample.guidance_low, config.sample.guidance_high))
        if config.sample.sampler == "sde":
            return sde_sample(velocity_fn, noise, sde_key, num_steps=config.sample.num_steps,
                              path=config.diffusion.path)
        return ode_sample(velocity_fn, noise, num_steps=config.sample.num_steps, method=config.sample.ode_method)

    return sample


@dataclasses.dataclass
class Experiment(loop.Experiment):
    model: SiT
    source: Any
    sampler: Callable | None  # jitted sample(params, labels, key) -> images; None for ERW's warmup stage
    sample_key: jax.Array
    tx: Any  # the optax transformation
    loss_fn: Callable = None  # the LossFn the step differentiates
    prepare_batch: Callable = lambda batch: batch  # adds the alignment targets to a global batch
    data_keys: tuple = ("image", "label")  # example fields the data pipeline keeps
    alignment: Any = None  # jaxrep.experiments.alignment.Alignment, or None for align.method='none'


def build_experiment(config, devices=None, *, stage: str = "main") -> Experiment:
    """Validates the config (before anything compiles) and builds model, state, step and sampler.

    stage="erw_warmup" builds ERW's phase 1 instead: a SiT of the first `align.erw.l2r_depth` blocks plus
    the projector, trained to match the encoder targets from clean inputs at t = 0 (no sampler).
    """
    devices = loop.select_devices(config, devices)
    diffusion_configs.validate(config, num_devices=len(devices))  # before the data source opens any file
    source = with_encoder_images(build_source(config), config)
    image_shape = tuple(source.image_shape)
    diffusion_configs.validate_image_size(config, image_shape[0])

    mesh = parallel.make_mesh(devices)
    model = build_model(config, image_shape)
    alignment = build_alignment(config, model, image_shape, mesh)
    if stage == "erw_warmup":
        # ERW's phase 1 runs without RoPE (`ERW:train.py` init_model(is_warmup=True)); QK-norm stays, so the
        # transplanted blocks' params match.
        model = model.clone(depth=config.align.erw.l2r_depth, use_rope=False)
    tx = optimizer(config)
    init_key, train_key, sample_key = jax.random.split(jax.random.key(config.seed), 3)
    init_state = state_initializer(model, tx, image_shape, init_key, train_key, alignment)
    shardings = parallel.state_shardings(jax.eval_shape(init_state), mesh, config.param_sharding)
    state = jax.jit(init_state, out_shardings=shardings)()  # born on the mesh, replicated or FSDP-split
    loss_fn = make_loss(model, config, alignment, stage)
    train_step = make_train_step(loss_fn, tx, ema_decay=config.ema_decay)
    jitted = loop.jit_train_step(train_step, state, mesh)
    sampler = None if stage == "erw_warmup" else jax.jit(make_sampler(model, config))
    extra_keys = () if alignment is None or alignment.image_key == "image" else (alignment.image_key,)
    if config.data.source == "latent_records":
        extra_keys += ("latent_std",)  # posterior moments: the step draws z from them
    return Experiment(config=config, mesh=mesh, model=model, source=source, state=state, train_step=train_step,
                      jitted_step=jitted, sampler=sampler, sample_key=sample_key, tx=tx, loss_fn=loss_fn,
                      prepare_batch=alignment.prepare_batch if alignment else (lambda batch: batch),
                      data_keys=("image", "label", *extra_keys), alignment=alignment)


def optimizer(config):
    """AdamW with the run's schedule and clipping (`jaxrep.training.make_optimizer`)."""
    optim = config.optim
    return make_optimizer(optim.learning_rate, warmup_steps=optim.warmup_steps, b1=optim.b1, b2=optim.b2,
                          eps=optim.eps, weight_decay=optim.weight_decay, grad_clip=optim.grad_clip)


def state_initializer(model: SiT, tx, image_shape: tuple[int, ...], init_key, train_key, alignment=None
                      ) -> Callable[[], Any]:
    """init() -> the fresh TrainState (SiT params, projector params when aligned, optimizer state, step key); jit
    it with the state's shardings, or `jax.eval_shape` it for an ahead-of-time compile."""

    def init_state():
        params = init_params(model, init_key, image_shape)
        if alignment is not None:
            params["projector"] = alignment.init_projector(init_key, model)
        return create_train_state(params, tx, jax.random.key_data(train_key))

    return init_state


def abstract_train_step(config, mesh: jax.sharding.Mesh, image_shape: tuple[int, ...]):
    """(jitted step, abstract state, abstract batch) of the run `config` on `mesh`, for an ahead-of-time
    `lower(...).compile()` or `jax.export` with nothing allocated or read: the state's ShapeDtypeStructs carry the
    `param_sharding` layout, the batch's are split over `data`. An aligned run's state holds its projector and its
    batch the encoder targets `align_target` (B, N, D_enc), as `Alignment.prepare_batch` adds them; the targets'
    own program is `abstract_alignment_targets`. ERW compiles its main stage."""
    model = build_model(config, image_shape)
    alignment = build_alignment(config, model, image_shape, mesh, abstract=True)
    tx = optimizer(config)
    state = abstract_state(config, mesh, model, tx, image_shape, alignment)
    split = parallel.batch_sharding(mesh)
    batch = {"image": jax.ShapeDtypeStruct((config.batch_size, *image_shape), jnp.float32, sharding=split),
             "label": jax.ShapeDtypeStruct((config.batch_size,), jnp.int32, sharding=split)}
    if config.data.source == "latent_records":
        batch["latent_std"] = batch["image"]
    if alignment is not None:
        images, _ = abstract_encoder_images(config, alignment, image_shape, mesh)
        batch["align_target"] = jax.eval_shape(alignment.targets, alignment.encoder_params, images)
    step = make_train_step(make_loss(model, config, alignment), tx, ema_decay=config.ema_decay)
    return loop.jit_train_step(step, state, mesh), state, batch


def abstract_state(config, mesh: jax.sharding.Mesh, model: SiT, tx, image_shape: tuple[int, ...], alignment=None):
    """The run's TrainState as ShapeDtypeStructs carrying the `param_sharding` layout on `mesh` (nothing allocated)."""
    keys = jax.random.split(jax.random.key(config.seed), 2)
    shapes = jax.eval_shape(state_initializer(model, tx, image_shape, *keys, alignment))
    shardings = parallel.state_shardings(shapes, mesh, config.param_sharding)
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)


def abstract_encoder_images(config, alignment, image_shape: tuple[int, ...], mesh: jax.sharding.Mesh):
    """(abstract images the alignment encoder reads for one global batch, their side): the float training images,
    or the uint8 raw images behind latents (8x the latent side: the SD-VAE's downsampling)."""
    split = parallel.batch_sharding(mesh)
    if alignment.image_key == "image":
        return jax.ShapeDtypeStruct((config.batch_size, *image_shape), jnp.float32, sharding=split), image_shape[0]
    side = 8 * image_shape[0]
    return jax.ShapeDtypeStruct((config.batch_size, side, side, 3), jnp.uint8, sharding=split), side


def abstract_alignment_targets(config, mesh: jax.sharding.Mesh, image_shape: tuple[int, ...]):
    """(jitted targets, abstract encoder params, abstract images) of an aligned run: the frozen encoder's forward
    that `Alignment.prepare_batch` runs before every step (its params replicated, the images split over `data`)."""
    alignment = build_alignment(config, build_model(config, image_shape), image_shape, mesh, abstract=True)
    return alignment.targets, alignment.encoder_params, abstract_encoder_images(config, alignment, image_shape,
                                                                                mesh)[0]


def latent_normalization(config) -> LatentNormalization:
    """The run's latent normalisation: per-channel statistics from `data.latent_stats_path` (iREPA) or the
    `data.latent_scale` of REPA."""
    if config.data.latent_stats_path:
        return load_latent_stats(config.data.latent_stats_path)
    return LatentNormalization(config.data.latent_scale)


def make_loss(model: SiT, config, alignment=None, stage: str = "main"):
    if stage == "erw_warmup":
        return make_erw_warmup_loss(model, alignment.projector, coef=config.align.erw.warmup_coef,
                                    class_dropout_prob=config.diffusion.class_dropout_prob,
                                    latent_normalization=latent_normalization(config),
                                    official_last_sample=config.align.erw.official_warmup_loss)
    return make_diffusion_loss(model, path=config.diffusion.path, time_weighting=config.diffusion.time_weighting,
                               class_dropout_prob=config.diffusion.class_dropout_prob,
                               alignment=alignment.term if alignment else None,
                               latent_normalization=latent_normalization(config))


def make_train_step_for_axis(experiment: Experiment, axis_name: str) -> Callable:
    """The experiment's step for per-device execution under `jax.shard_map` / `jax.pmap` over `axis_name`."""
    return make_train_step(experiment.loss_fn, experiment.tx, ema_decay=experiment.config.ema_decay,
                           axis_name=axis_name)


def prerequisites(config, workdir: str) -> list[Prerequisite]:
    """The runs this one needs made first (`jaxrep.experiments.prerequisites`): an aligned run's in-repo target
    encoder. The config is validated first, so a bad one fails before any prerequisite trains."""
    del workdir
    diffusion_configs.validate(config, num_devices=len(loop.select_devices(config)))
    return encoder_prerequisites(config)


@locks_workdir
def train_and_evaluate(config, workdir: str, devices=None, hooks: Sequence[loop.Hook] = ()):
    """Trains (resuming from the latest checkpoint in `workdir`), logs, samples; returns the final state.
    `hooks`: loop hooks of the main stage besides the sampler and the alignment probe (e.g. an evaluation).

    With align.method='erw' and no main-stage checkpoint yet, the warmup stage runs (or resumes) first in
    `workdir/erw_warmup` up to `align.erw.warmup_steps`; its weights are then transplanted into the fresh
    model (`jaxrep.experiments.alignment.erw_transfer`) and the main stage continues the global step from there.
    """
    experiment = build_experiment(config, devices)
    start = None
    main_checkpoints = Checkpointer(os.path.join(workdir, "checkpoints"), save_every=1)
    main_started = main_checkpoints.latest_step() is not None
    main_checkpoints.close()
    if config.align.method == "erw" and not main_started:
        warmup = build_experiment(config, devices, stage="erw_warmup")
        warm_state, data_state, preempted = run_stage(warmup, os.path.join(workdir, ERW_WARMUP_DIR),
                                                      config.align.erw.warmup_steps)
        if preempted:  # inside the warmup or at its last step: the next run resumes there
            return warm_state
        start = (erw_transfer(warm_state.params, experiment.state, experiment.tx,
                              l2r_depth=config.align.erw.l2r_depth, warmup_steps=config.align.erw.warmup_steps,
                              mesh=experiment.mesh), data_state)
    return run_stage(experiment, workdir, config.total_steps, start, hooks)[0]


def run_stage(experiment: Experiment, workdir: str, total_steps: int, start=None, hooks: Sequence[loop.Hook] = ()):
    """Trains one stage up to `total_steps` in `workdir`, resuming from its latest checkpoint, else from
    `start` = (state, data-iterator state) when given, else from the experiment's initial state, with the
    stage's own hooks and `hooks`.

    Returns (state, data-iterator state, whether it was preempted).
    """
    config, mesh = experiment.config, experiment.mesh
    checkpointer, state, extra = loop.resume(config, workdir, experiment.state,
                                             None if start is None else (start[0], {"data": start[1]}))
    dataset = training_dataset(experiment)
    iterator = make_iterator(dataset, extra.get("data"))
    next_batch = lambda step: experiment.prepare_batch(parallel.global_batch(next(iterator), mesh))
    if experiment.sampler is not None:
        hooks = (loop.Hook(sample_writer(experiment, workdir), config.sample_every), *hooks)
    if experiment.sampler is not None and experiment.alignment is not None and config.align.diagnostics_every:
        hooks += (loop.Hook(alignment_probe(experiment, dataset), config.align.diagnostics_every),)
    # An aligned loss is the flow-matching loss plus lambda times a negative cosine: show the two terms, not the sum.
    terms = ("loss",) if experiment.alignment is None else ("flow_loss", "align_loss")
    result = loop.fit_in_workdir(config, workdir, state, experiment.jitted_step, next_batch,
                                 checkpointer=checkpointer, total_steps=total_steps, data_state=iterator.get_state,
                                 hooks=hooks, desc="train" if experiment.sampler else "erw warmup",
                                 progress_metrics=terms if experiment.sampler else ("align_loss",))
    return result.state, iterator.get_state(), result.preempted


def training_dataset(experiment: Experiment):
    """The run's grain dataset of global batches, its order drawn from the root key (`jaxrep.data.shuffle_seed`)."""
    config = experiment.config
    return make_dataset(experiment.source, global_batch_size=config.batch_size, root_key=jax.random.key(config.seed),
                        keys=experiment.data_keys, num_workers=config.data.num_workers)


def alignment_probe(experiment: Experiment, dataset) -> Callable[[Any, int], dict]:
    """hook(state, step) -> the alignment diagnostics of `jaxrep.experiments.alignment.diagnostics_hook` on the
    dataset's first global batch (the same probe batch at every step and on every resume)."""
    probe_batch = experiment.prepare_batch(parallel.global_batch(next(make_iterator(dataset)), experiment.mesh))
    return diagnostics_hook(experiment.model, experiment.alignment, experiment.config, probe_batch,
                            latent_normalization(experiment.config))


def sample_writer(experiment: Experiment, workdir: str) -> Callable[[Any, int], dict]:
    """write(state, step): EMA samples of `sample.num_images` labels to `workdir/samples_<step>.png`, logged as
    `samples` (a `Media` entry: W&B shows it)."""
    config = experiment.config
    num_labels = config.sample.num_images
    sample_labels = jnp.arange(num_labels, dtype=jnp.int32) % config.data.num_classes

    def write(state, step: int) -> dict:
        images = experiment.sampler(state.ema_params, sample_labels, experiment.sample_key)
        path = os.path.join(workdir, f"samples_{step:07d}.png")
        save_image_grid(path, np.asarray(images), upscale=2, ncols=int(np.ceil(np.sqrt(num_labels))))
        return {"samples": Media(path)}

    return write

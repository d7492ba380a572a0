"""Train a SiT flow-matching model: `python -m train.diffusion --config=configs/diffusion.py:cpu --workdir=DIR`.

Everything the run produces goes to the work directory: `checkpoints/` (orbax; resumed automatically),
`metrics.jsonl`, `tensorboard/`, `samples_<step>.png` (EMA samples) and `config.json`.

Representation alignment (`align.method` repa/irepa/erw, presets `cpu_repa`, `b2_irepa`, ...): see
train/alignment.py. ERW runs its warmup stage first, in `erw_warmup/` of the work directory (its own
checkpoints and metrics, resumed like the main stage), then the main stage from the transplanted weights.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import time
from typing import Any, Callable

from absl import app, flags
from ml_collections import config_flags

import jax
import jax.numpy as jnp
import numpy as np

from configs import diffusion as diffusion_configs
from jaxrep import parallel
from jaxrep.align.objective import make_erw_warmup_loss
from jaxrep.checkpoint import Checkpointer, PreemptionGuard, abstract_like
from jaxrep.data import ArraySource, ColoredShapes, DSprites, make_dataset, make_iterator
from jaxrep.data.latent_records import LatentRecordSource
from jaxrep.diffusion import classifier_free_guidance, ode_sample, sde_sample
from jaxrep.diffusion.latents import LatentNormalization, load_latent_stats
from jaxrep.diffusion.objective import make_diffusion_loss
from jaxrep.logging import MetricLogger, progress_bar, save_config, save_image_grid
from jaxrep.nn.sit import SiT, sit_preset
from jaxrep.training import (NonFiniteLossError, check_finite, create_train_state, current_learning_rate,
                             make_optimizer, make_train_step)
from jaxrep.workdir_lock import locks_workdir
from train.alignment import ERW_WARMUP_DIR, build_alignment, erw_transfer, with_encoder_images
from train.cli import parse_flags, run_entrypoint

# Fault injection for the kill-and-resume test: SIGKILL this process right after the given step.
KILL_AT_STEP_ENV = "JAXREP_KILL_AT_STEP"


def build_source(config) -> Any:
    if config.data.source == "shapes32":
        return ColoredShapes()
    if config.data.source == "dsprites":
        return DSprites()
    if config.data.source == "latent_records":  # the alignment encoder reads the stored image bytes
        return LatentRecordSource(config.data.path, with_images=config.align.method != "none")
    return ArraySource(config.data.path, config.data.labels_path or None)


def build_model(config, image_shape: tuple[int, ...]) -> SiT:
    height, _, channels = image_shape
    common = dict(input_size=height, in_channels=channels, num_classes=config.data.num_classes,
                  mlp_ratio=config.model.mlp_ratio, dtype=jnp.dtype(config.model.dtype),
                  use_rope=config.model.use_rope, qk_norm=config.model.qk_norm)
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


def describe_compiled(compiled, step_time_hint: str = "") -> str:
    """One-line memory analysis of a compiled step (lets a pod user see an OOM before training)."""
    memory = compiled.memory_analysis()
    if memory is None:
        return "memory analysis unavailable on this backend"
    mib = lambda n: f"{n / 2**20:.1f} MiB"
    return (f"compiled step memory per device: arguments {mib(memory.argument_size_in_bytes)}, "
            f"outputs {mib(memory.output_size_in_bytes)}, temporaries {mib(memory.temp_size_in_bytes)}, "
            f"code {mib(memory.generated_code_size_in_bytes)}{step_time_hint}")


@dataclasses.dataclass
class Experiment:
    """Everything built from a config before training: tests drive the same pieces as the entrypoint."""

    config: Any
    mesh: jax.sharding.Mesh
    model: SiT
    source: Any
    state: Any  # initial TrainState, replicated on the mesh
    train_step: Callable  # pure step(state, batch) -> (state, metrics), for jit or shard_map
    jitted_step: Callable  # jax.jit of train_step with shardings and donated state
    sampler: Callable | None  # jitted sample(params, labels, key) -> images; None for ERW's warmup stage
    sample_key: jax.Array
    tx: Any  # the optax transformation
    loss_fn: Callable = None  # the LossFn the step differentiates
    prepare_batch: Callable = lambda batch: batch  # adds the alignment targets to a global batch
    data_keys: tuple = ("image", "label")  # example fields the data pipeline keeps
    alignment: Any = None  # train.alignment.Alignment, or None for align.method='none'


def build_experiment(config, devices=None, *, stage: str = "main") -> Experiment:
    """Validates the config (before anything compiles) and builds model, state, step and sampler.

    stage="erw_warmup" builds ERW's phase 1 instead: a SiT of the first `align.erw.l2r_depth` blocks plus
    the projector, trained to match the encoder targets from clean inputs at t = 0 (no sampler).
    """
    devices = devices or (jax.devices()[:config.num_devices] if config.num_devices else jax.devices())
    diffusion_configs.validate(config, num_devices=len(devices))  # before the data source opens any file
    source = with_encoder_images(build_source(config), config)
    image_shape = tuple(source.image_shape)
    diffusion_configs.validate(config, num_devices=len(devices), image_size=image_shape[0])

    mesh = parallel.make_mesh(devices)
    replicated = parallel.replicated_sharding(mesh)
    model = build_model(config, image_shape)
    alignment = build_alignment(config, model, image_shape, mesh)
    if stage == "erw_warmup":
        # ERW's phase 1 runs without RoPE (`ERW:train.py` init_model(is_warmup=True)); QK-norm stays, so the
        # transplanted blocks' params match.
        model = model.clone(depth=config.align.erw.l2r_depth, use_rope=False)
    tx = make_optimizer(config.optim.learning_rate, warmup_steps=config.optim.warmup_steps, b1=config.optim.b1,
                        b2=config.optim.b2, eps=config.optim.eps, weight_decay=config.optim.weight_decay,
                        grad_clip=config.optim.grad_clip)
    init_key, train_key, sample_key = jax.random.split(jax.random.key(config.seed), 3)

    @functools.partial(jax.jit, out_shardings=replicated)
    def init_state():
        params = init_params(model, init_key, image_shape)
        if alignment is not None:
            params["projector"] = alignment.init_projector(init_key, model)
        return create_train_state(params, tx, jax.random.key_data(train_key))

    state = init_state()  # born on the mesh, replicated
    loss_fn = make_loss(model, config, alignment, stage)
    train_step = make_train_step(loss_fn, tx, ema_decay=config.ema_decay)
    state_sharding = jax.tree.map(lambda _: replicated, state)
    jitted = jax.jit(train_step, in_shardings=(state_sharding, parallel.batch_sharding(mesh)),
                     out_shardings=(state_sharding, replicated), donate_argnums=0)
    sampler = None if stage == "erw_warmup" else jax.jit(make_sampler(model, config))
    extra_keys = () if alignment is None or alignment.image_key == "image" else (alignment.image_key,)
    if config.data.source == "latent_records":
        extra_keys += ("latent_std",)  # posterior moments: the step draws z from them
    return Experiment(config=config, mesh=mesh, model=model, source=source, state=state, train_step=train_step,
                      jitted_step=jitted, sampler=sampler, sample_key=sample_key, tx=tx, loss_fn=loss_fn,
                      prepare_batch=alignment.prepare_batch if alignment else (lambda batch: batch),
                      data_keys=("image", "label", *extra_keys), alignment=alignment)


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


@locks_workdir
def train_and_evaluate(config, workdir: str, devices=None):
    """Trains (resuming from the latest checkpoint in `workdir`), logs, samples; returns the final state.

    With align.method='erw' and no main-stage checkpoint yet, the warmup stage runs (or resumes) first in
    `workdir/erw_warmup` up to `align.erw.warmup_steps`; its weights are then transplanted into the fresh
    model (`train.alignment.erw_transfer`) and the main stage continues the global step from there.
    """
    experiment = build_experiment(config, devices)
    start = None
    main_checkpoints = Checkpointer(os.path.join(workdir, "checkpoints"), save_every=1)
    main_started = main_checkpoints.latest_step() is not None
    main_checkpoints.close()
    if config.align.method == "erw" and not main_started:
        warmup = build_experiment(config, devices, stage="erw_warmup")
        warm_state, data_state = run_stage(warmup, os.path.join(workdir, ERW_WARMUP_DIR),
                                           config.align.erw.warmup_steps)
        if int(warm_state.step) < config.align.erw.warmup_steps:  # preempted inside the warmup
            return warm_state
        start = (erw_transfer(warm_state.params, experiment.state, experiment.tx,
                              l2r_depth=config.align.erw.l2r_depth, warmup_steps=config.align.erw.warmup_steps,
                              mesh=experiment.mesh), data_state)
    return run_stage(experiment, workdir, config.total_steps, start)[0]


def run_stage(experiment: Experiment, workdir: str, total_steps: int, start=None):
    """Trains one stage up to `total_steps` in `workdir`, resuming from its latest checkpoint, else from
    `start` = (state, data-iterator state) when given, else from the experiment's initial state.

    Returns (state, data-iterator state).
    """
    config = experiment.config
    mesh, state = experiment.mesh, experiment.state
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), save_every=config.checkpoint_every,
                                keep=config.keep_checkpoints)
    dataset = make_dataset(experiment.source, global_batch_size=config.batch_size, seed=config.seed,
                           keys=experiment.data_keys, num_workers=config.data.num_workers)
    data_state = None
    if checkpointer.latest_step() is not None:
        state, extra = checkpointer.restore(abstract_like(state))
        data_state = extra.get("data")
        print(f"restored step {int(state.step)} from {checkpointer.directory}", flush=True)
    elif start is not None:
        state, data_state = start
    iterator = make_iterator(dataset, data_state)
    save_config(workdir, config)

    first = experiment.prepare_batch(parallel.global_batch(next(iterator), mesh))
    start = time.perf_counter()
    compiled = experiment.jitted_step.lower(state, first).compile()
    print(describe_compiled(compiled, f"; compile {time.perf_counter() - start:.1f} s"), flush=True)

    num_labels = config.sample.num_images
    sample_labels = jnp.arange(num_labels, dtype=jnp.int32) % config.data.num_classes

    def write_samples(step: int) -> None:
        if experiment.sampler is None:
            return
        images = experiment.sampler(state.ema_params, sample_labels, experiment.sample_key)
        save_image_grid(os.path.join(workdir, f"samples_{step:07d}.png"), np.asarray(images), upscale=2,
                        ncols=int(np.ceil(np.sqrt(num_labels))))

    logger = MetricLogger(workdir)
    kill_at = int(os.environ.get(KILL_AT_STEP_ENV, "-1"))
    step = int(state.step)
    bar = progress_bar(total_steps, initial=step)
    batch, pending, last_log = first, None, time.perf_counter()
    try:
        with PreemptionGuard() as preemption:
            while step < total_steps:
                state, metrics = compiled(state, batch)
                step += 1
                stop = preemption.should_stop(step)  # every step, on every process
                data_state = iterator.get_state()  # position after every batch consumed so far
                # Check the previous step's metrics after dispatching this one, keeping the device busy.
                if pending is not None:
                    check_finite(pending)
                pending = metrics
                bar.update(1)
                if step % config.log_every == 0 or step == total_steps:
                    now = time.perf_counter()
                    metrics = jax.device_get(metrics)
                    check_finite(metrics)
                    scalars = dict(metrics, learning_rate=current_learning_rate(state.opt_state),
                                   samples_per_s=config.batch_size * config.log_every / (now - last_log))
                    scalars = logger.log(step, scalars)
                    bar.set_postfix(loss=f"{scalars['loss']:.4f}", samples_s=f"{scalars['samples_per_s']:.0f}")
                    last_log = now
                if step % config.checkpoint_every == 0 or stop:
                    check_finite(jax.device_get(metrics))
                    checkpointer.save(step, state, {"data": data_state}, force=stop)
                if config.sample_every and step % config.sample_every == 0:
                    write_samples(step)
                if step == kill_at:
                    checkpointer.wait()
                    os.kill(os.getpid(), signal.SIGKILL)
                if stop:
                    print(f"SIGTERM: saved step {step}, exiting", flush=True)
                    checkpointer.close()
                    return state, data_state
                if step < total_steps:
                    batch = experiment.prepare_batch(parallel.global_batch(next(iterator), mesh))
            if pending is not None:  # this run trained: save its end unless the interval just did
                check_finite(jax.device_get(pending))
                if checkpointer.latest_step() != step:
                    checkpointer.save(step, state, {"data": iterator.get_state()}, force=True)
            write_samples(step)
    finally:
        bar.close()
        logger.close()
    checkpointer.close()
    return state, data_state


def main(argv) -> None:
    def run(config, workdir: str):
        parallel.initialize_from_config(config.distributed)
        return train_and_evaluate(config, workdir)

    run_entrypoint(argv, run, expected_errors=(NonFiniteLossError,))


if __name__ == "__main__":
    # Flags are defined only when run as a program, so importing this module (tests, train.evaluate) adds none.
    config_flags.DEFINE_config_file("config", "configs/diffusion.py:cpu", "Config file and preset.")
    flags.DEFINE_string("workdir", "workdirs/diffusion_cpu", "Directory for checkpoints, logs and samples.")
    app.run(main, flags_parser=parse_flags)

"""Compile a diffusion run's programs for a Cloud TPU slice on any machine, and say whether they fit:

  python -m train.compile_check --config=configs/diffusion.py:xl2_repa --topology=v5p-64 [--config.a.b=value ...]

No TPU and no weight or data file is needed: libtpu's compiler (the `tpu` extra) compiles for the slice's
compile-only devices (`jaxrep.run.aot`), from abstract shapes. The mesh is built over the slice's devices exactly as
training builds it over real ones, with the run's `param_sharding`. Programs (`--programs`):
- `train`: the train step on every device of the slice (an aligned run's projector and loss included, its
  encoder targets as the step's input), and for an aligned run `targets`, the frozen encoder's forward (DINOv2
  from its preset) that runs before every step; the encoder's params stay resident during the step;
- `sample`: the EMA sampler on one host's devices at the evaluation batch (`--eval_config`, default
  `configs/evaluate.py:fid50k`); sampling fields it leaves to the run take REPA's final evaluation
  (`PAPER_EVALUATION`: SDE 250 steps, CFG 1.8 for t in [0, 0.7]);
- `decode`: the SD-VAE decode of one evaluation batch (latent runs; the architecture of `eval_config.vae.path`'s
  config.json, else SD-VAE's);
- `encode`: `train.prepare_latents`' SD-VAE encode of one batch (`configs/prepare_latents.py:imagenet256`, or
  `imagenet512` for 64 x 64 latents) on one host's devices.
Latent runs compile as pods train them, on prepared records (`as_compiled`). Each prints per-device memory against
the chip's HBM, FLOPs and bytes, the collectives, and a roofline ESTIMATE.
A program that does not fit ends the run with one line naming the shortfall and the fixes (exit status 1); a
global batch the slice's devices do not divide, or an unknown topology, is one line before compiling.
"""

from __future__ import annotations

import sys

from configs import diffusion as diffusion_configs
from configs import evaluate as evaluate_configs
from configs import prepare_latents as prepare_configs
from jaxrep.config_checks import ConfigError, require
from jaxrep.run import aot

# REPA's final evaluation (README: `--mode sde --num-steps 250 --cfg-scale 1.8 --guidance-high 0.7`), for every
# sampling field the evaluation config leaves to the run.
PAPER_EVALUATION = {"sampler": "sde", "num_steps": 250, "cfg_scale": 1.8, "guidance_low": 0.0, "guidance_high": 0.7}

PROGRAMS = ("train", "sample", "decode", "encode")


def model_input_shape(config, image_size: int = 0) -> tuple[int, int, int]:
    """The SiT's input (H, W, C): the procedural / Fashion-MNIST images, else SD-VAE latents of side `image_size`
    (0: 32, or 64 for the *_512 presets)."""
    side = diffusion_configs.image_size_of(config)
    if side is not None:
        return (side, side, 1 if config.data.source in ("dsprites", "fashion_mnist") else 3)
    side = image_size or (64 if config.preset.endswith("_512") or "_512_" in config.preset else 32)
    return (side, side, 4)


def as_compiled(config):
    """`config` as a pod trains it: latents without raw images beside them (`data.source='arrays'`) become the
    prepared records of docs/imagenet.md, whose stored crops the alignment encoder reads."""
    if config.data.source != "arrays" or config.align.encoder.images_path:
        return config
    config = config.copy_and_resolve_references()
    config.data.source = "latent_records"
    return config


def train_programs(config, devices, image_shape) -> list[aot.ProgramReport]:
    from jaxrep import parallel
    from jaxrep.experiments import diffusion as diffusion_experiment

    mesh = parallel.make_mesh(devices)
    reports = []
    resident = 0
    if config.align.method != "none":
        targets, encoder_params, images = diffusion_experiment.abstract_alignment_targets(config, mesh, image_shape)
        resident = aot.abstract_bytes(encoder_params)
        reports.append(aot.compile_report("targets (alignment encoder forward)", targets, encoder_params, images))
    step, state, batch = diffusion_experiment.abstract_train_step(config, mesh, image_shape)
    reports.append(aot.compile_report(f"train step ({config.param_sharding}, global batch {config.batch_size})",
                                      step, state, batch, resident_bytes=resident))
    return reports


def sample_programs(config, eval_config, host_devices, image_shape, programs) -> list[aot.ProgramReport]:
    import jax
    import jax.numpy as jnp

    from jaxrep import parallel
    from jaxrep.experiments import diffusion as diffusion_experiment
    from jaxrep.experiments.run_config import sampling_config
    from jaxrep.weights.autoencoder_kl import abstract_autoencoder_kl

    mesh = parallel.make_mesh(host_devices)
    split, replicated = parallel.batch_sharding(mesh), parallel.replicated_sharding(mesh)
    batch = eval_config.batch_size
    reports = []
    if "sample" in programs:
        run = sampling_config(config, eval_config)
        model = diffusion_experiment.build_model(run, image_shape)
        # The EMA weights in the run's layout; the sampler reads the SiT's, not an aligned run's projector.
        params = {"sit": diffusion_experiment.abstract_state(run, mesh, model, diffusion_experiment.optimizer(run),
                                                        image_shape).ema_params["sit"]}
        sample = jax.jit(diffusion_experiment.make_sampler(model, run),
                         in_shardings=(parallel.shardings_of(params), split, replicated), out_shardings=split)
        labels = jax.ShapeDtypeStruct((batch,), jnp.int32, sharding=split)
        key = jax.eval_shape(lambda: jax.random.key(0))
        sampler = f"{run.sample.sampler} {run.sample.num_steps} steps, cfg {run.sample.cfg_scale:g}"
        reports.append(aot.compile_report(f"sample ({sampler}, {batch} images per host)", sample, params,
                                          labels, jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=replicated)))
    latent = image_shape[-1] == 4
    if latent and ("decode" in programs or "encode" in programs):
        vae, variables = abstract_autoencoder_kl(eval_config.vae.path, latent_size=image_shape[0],
                                                 dtype=jnp.dtype(eval_config.vae.dtype))
        side = image_shape[0] * 2 ** (len(vae.block_out_channels) - 1)  # the VAE's downsampling (SD-VAE: 8)
        variables = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=replicated), variables)
        if "decode" in programs:
            decode = jax.jit(lambda v, z: vae.apply(v, z, method="decode"), out_shardings=split)
            latents = jax.ShapeDtypeStruct((batch, *image_shape), jnp.float32, sharding=split)
            reports.append(aot.compile_report(f"decode (SD-VAE, {batch} latents per host)", decode, variables,
                                              latents))
        if "encode" in programs:
            prepare = prepare_configs.get_config("imagenet512" if side == 512 else "imagenet256")
            require(prepare.batch_size % len(host_devices) == 0, "batch_size",
                    f"prepare_latents' {prepare.batch_size} images per call do not split over the "
                    f"{len(host_devices)} devices of a host")
            encode = jax.jit(lambda v, x: vae.apply(v, x.astype(jnp.float32) / 127.5 - 1.0, method="encode"),
                             out_shardings=split)
            images = jax.ShapeDtypeStruct((prepare.batch_size, side, side, 3), jnp.uint8, sharding=split)
            reports.append(aot.compile_report(f"encode (prepare_latents, {prepare.batch_size} images per host)",
                                              encode, variables, images))
    return reports


def check(config, eval_config, topology_name: str, programs=PROGRAMS, image_size: int = 0) -> int:
    """Compiles `programs` of `config` for `topology_name`, prints each report; returns the exit status.
    `image_size`: the latent side (`model_input_shape`)."""
    unknown = sorted(set(programs) - set(PROGRAMS))
    if unknown:
        raise ConfigError(f"programs: unknown {unknown}; choose from {', '.join(PROGRAMS)}")
    topology = aot.resolve_topology(topology_name)
    devices = topology.devices()
    config = as_compiled(config)
    host_devices = [d for d in devices if d.process_index == 0]
    image_shape = model_input_shape(config, image_size)
    diffusion_configs.validate(config, num_devices=len(devices), image_size=image_shape[0], check_files=False)
    eval_config = eval_config.copy_and_resolve_references()
    eval_config.sample_only = True  # only the sampler is compiled: no feature extractor is needed
    for field, value in PAPER_EVALUATION.items():
        if eval_config.sample[field] is None:
            eval_config.sample[field] = value
    evaluate_configs.validate(eval_config, num_devices=len(host_devices))
    chip = topology.chip
    hosts = len({d.process_index for d in devices})
    print(f"{topology.name} = {topology.topology_name}: {len(devices)} {devices[0].device_kind} devices on {hosts} "
          f"host(s), {chip.hbm_gib:g} GiB HBM each; SiT input {image_shape}, {config.model.dtype} activations",
          flush=True)
    try:
        reports = train_programs(config, devices, image_shape) if "train" in programs else []
        reports += sample_programs(config, eval_config, host_devices, image_shape, programs)
    except aot.ProgramTooLarge as error:
        print(f"error: {error} (a {chip.name} on {topology.name}); fixes: {_fixes(config)}", file=sys.stderr,
              flush=True)
        return 1
    for report in reports:
        print(aot.describe(report, chip, images=_images_per_call(report, config, eval_config)), flush=True)
    over = [report for report in reports if aot.shortfall(report, chip) > 0]
    if over:
        report = max(over, key=lambda r: aot.shortfall(r, chip))
        print(f"error: {report.name} needs {report.total_bytes / aot.GIB:.2f} GiB per device, "
              f"{aot.shortfall(report, chip) / aot.GIB:.2f} GiB more than the {chip.hbm_gib:g} GiB of a {chip.name} "
              f"on {topology.name}; fixes: {_fixes(config)}", file=sys.stderr, flush=True)
        return 1
    return 0


def _fixes(config) -> str:
    """The changes that shrink a run's per-device memory and that it has not made yet."""
    return ", ".join(fix for fix, applies in (("--config.param_sharding=fsdp", config.param_sharding != "fsdp"),
                                              ("a smaller per-device batch (--config.batch_size)", True),
                                              ("--config.model.dtype=bfloat16", config.model.dtype != "bfloat16"))
                     if applies)


def _images_per_call(report: aot.ProgramReport, config, eval_config) -> int | None:
    if report.name.startswith("train"):
        return config.batch_size
    return eval_config.batch_size if report.name.startswith(("sample", "decode")) else None

"""Sample a diffusion work directory into one ADM `.npz`, on every device of every process:

  python -m train.sample --config=configs/evaluate.py:fid50k --workdir=RUN [--config.a.b=value ...]

The sampling stage of `train.evaluate` (which then scores the file); this entrypoint only samples.
1. Each process rebuilds the run from its `config.json` on its local devices and restores the checkpoint's EMA
   weights (`step`, default the latest).
2. The `num_samples` images are cut into global batches of `batch_size`; batch b uses the noise key
   fold_in(seed key, b) and labels b * batch_size ... (b + 1) * batch_size - 1 of one global label list, and
   process p samples batches p, p + P, p + 2P, ... on its devices. The images therefore do not depend on the
   number of processes. Labels are class-balanced by default (`labels='balanced'`: label i = i mod classes, 50 per
   class for 50K of ImageNet); REPA's generate.py draws them uniformly at random, reproduced by
   `labels='random'`. Balanced labels remove the class-histogram noise from FID; that is the default here.
3. Latent runs are decoded through the SD-VAE (`vae.path`, default the one the prepared dataset was encoded with):
   x = decode(z / data.latent_scale) (or iREPA's z / scale + bias per channel), uint8 =
   floor(clip(255 (x + 1) / 2, 0, 255)), as REPA's generate.py converts (truncating). Pixel-space runs are
   quantised by rounding (`jaxrep.run.logging.to_uint8`).
4. Each process writes its share to `shares/process_PPP.npz`; after a barrier process 0 merges them by index into
   `samples_<N>x<H>x<W>x3.npz` (`arr_0` uint8 NHWC, `arr_1` labels: ADM's evaluator layout), checks that the
   shares are disjoint and complete, removes them and writes `samples_grid.png`.
"""

from __future__ import annotations

import io
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from configs import evaluate as evaluate_configs
from jaxrep import files, parallel
from jaxrep.config_checks import ConfigError
from jaxrep.data.latent_records import read_manifest
from jaxrep.diffusion.latents import LatentNormalization
from jaxrep.experiments import diffusion as diffusion_experiment
from jaxrep.experiments.run_config import load_run_config, sampling_config
from jaxrep.run.checkpoint import Checkpointer, abstract_like
from jaxrep.run.logging import progress_bar, save_image_grid, to_uint8
from jaxrep.weights import hub

# Errors that mean bad input or a run that cannot go on (the command line prints them as one line).
EXPECTED_ERRORS = (FileNotFoundError,)

LABEL_STREAM = 0x6C61626C  # folded into the seed key for REPA's random labels (the noise keys stay fold_in(key, b))


def restore_params(experiment: diffusion_experiment.Experiment, workdir: str, step: int, use_ema: bool):
    """(params, step) of checkpoint `step` (-1: latest), restored replicated on the experiment's mesh."""
    directory = files.join(workdir, "checkpoints")
    if not files.path(directory).is_dir():
        raise FileNotFoundError(f"no checkpoints/ in {workdir!r}; train first with python -m train.diffusion")
    checkpointer = Checkpointer(directory, save_every=1)
    try:
        steps = checkpointer.all_steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {directory}")
        step = max(steps) if step == -1 else step
        if step not in steps:
            raise ValueError(f"step: no checkpoint {step} in {directory}; available: {sorted(steps)}")
        state, _ = checkpointer.restore(abstract_like(experiment.state), step)
    finally:
        checkpointer.close()
    return (state.ema_params if use_ema else state.params), step


def vae_path_for(eval_config, run_config) -> str:
    """The SD-VAE that decodes a latent run: `vae.path`, else the one the prepared dataset records."""
    if eval_config.vae.path:
        path = eval_config.vae.path
    elif run_config.data.source == "latent_records":
        path = read_manifest(run_config.data.path)["vae"]["path"]
    else:
        raise ConfigError("vae.path: the run models latents; name the SD-VAE that decodes them (a diffusers "
                          "AutoencoderKL directory or .safetensors file)")
    if not hub.is_hub_name(path) and not files.path(path).exists():
        raise ConfigError(f"vae.path: no SD-VAE at {path!r}")
    return path


def make_latent_decoder(vae_path: str, dtype: str, normalization: LatentNormalization):
    """(decode(vae_params, latents (B, h, w, c)) -> uint8 (B, H, W, 3), vae_params): REPA's generate.py rule."""
    from jaxrep.weights.autoencoder_kl import load_autoencoder_kl

    model, vae_params = load_autoencoder_kl(vae_path, dtype=jnp.dtype(dtype))

    def decode(vae_params, latents):
        images = model.apply(vae_params, normalization.denormalize(latents), method="decode")
        return jnp.floor(jnp.clip(127.5 * (images + 1.0), 0.0, 255.0)).astype(jnp.uint8)

    return decode, vae_params


def make_sharded_sampler(experiment: diffusion_experiment.Experiment, decoder=None) -> Callable:
    """sample(params, labels (B,), key) -> images (B, H, W, C) jitted with labels and images split over `data`;
    with `decoder` = (decode, vae_params) from `make_latent_decoder`, the latents are decoded to uint8 pixels
    inside the same program."""
    mesh = experiment.mesh
    replicated, batch = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
    params = parallel.shardings_of(experiment.state.ema_params)  # replicated, or FSDP-split like the run's
    sample = diffusion_experiment.make_sampler(experiment.model, experiment.config)
    if decoder is None:
        return jax.jit(sample, in_shardings=(params, batch, replicated), out_shardings=batch)
    decode, vae_params = decoder
    vae_params = jax.device_put(vae_params, replicated)
    jitted = jax.jit(lambda params, vae, labels, key: decode(vae, sample(params, labels, key)),
                     in_shardings=(params, replicated, batch, replicated), out_shardings=batch)
    return lambda params, labels, key: jitted(params, vae_params, labels, key)


def sample_labels(num_samples: int, num_classes: int, mode: str, key: jax.Array) -> np.ndarray:
    """The global label list (N,) int32: 'balanced' (i mod classes) or 'random' (uniform, as REPA's generate.py)."""
    if mode == "random":
        return np.asarray(jax.random.randint(jax.random.fold_in(key, LABEL_STREAM), (num_samples,), 0, num_classes),
                          np.int32)
    return (np.arange(num_samples) % num_classes).astype(np.int32)


def generate_samples(sample_fn, params: Any, *, num_samples: int, batch_size: int, num_classes: int,
                     key: jax.Array, mesh: jax.sharding.Mesh, labels: str = "balanced", process_index: int = 0,
                     process_count: int = 1, show_progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This process's share of the samples: (uint8 images (n, H, W, C), labels (n,), global indices (n,)).

    Global batch b (noise key fold_in(key, b)) belongs to process b mod process_count; the last batch is padded to
    `batch_size` (one compile) and trimmed.
    """
    all_labels = sample_labels(num_samples, num_classes, labels, key)
    starts = list(range(0, num_samples, batch_size))[process_index::process_count]
    sharding = parallel.batch_sharding(mesh)
    images, indices = [], []
    bar = progress_bar(sum(min(batch_size, num_samples - s) for s in starts), desc="sample", unit="img",
                       show=show_progress)
    try:
        for start in starts:
            batch_labels = all_labels[start:start + batch_size]
            count = len(batch_labels)
            padded = np.pad(batch_labels, (0, batch_size - count))
            batch = sample_fn(params, jax.device_put(padded, sharding), jax.random.fold_in(key, start // batch_size))
            images.append(to_uint8(np.asarray(batch))[:count])
            indices.append(np.arange(start, start + count))
            bar.update(count)
    finally:
        bar.close()
    indices = np.concatenate(indices) if indices else np.zeros((0,), np.int64)
    return (np.concatenate(images) if images else None), all_labels[indices], indices


def write_sample_file(path: str, images: np.ndarray, labels: np.ndarray) -> None:
    """ADM's sample layout: `arr_0` uint8 (N, H, W, 3) NHWC, `arr_1` int64 labels (N,)."""
    if images.shape[-1] == 1:  # ADM's Inception reads RGB
        images = np.repeat(images, 3, axis=-1)
    with files.path(path).open("wb") as file:
        np.savez(file, arr_0=images, arr_1=labels.astype(np.int64))


def merge_shares(share_paths: list[str], num_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, ...), labels (N,)) from the processes' share files, placed by global index; raises if the shares
    overlap or leave an index out."""
    images, labels, seen = None, np.zeros((num_samples,), np.int32), np.zeros((num_samples,), bool)
    for path in share_paths:
        with np.load(io.BytesIO(files.read_bytes(path)), allow_pickle=False) as share:
            indices = share["indices"]
            if seen[indices].any():
                raise RuntimeError(f"{path}: sample indices overlap another process's share")
            if images is None:
                images = np.zeros((num_samples, *share["images"].shape[1:]), np.uint8)
            images[indices], labels[indices], seen[indices] = share["images"], share["labels"], True
    if not seen.all():
        raise RuntimeError(f"the shares miss {int((~seen).sum())} of {num_samples} sample indices")
    return images, labels


def sample(eval_config, workdir: str, output_dir: str = "", *, show_progress: bool = True) -> dict:
    """Samples on every process and merges (module docstring). Returns, on process 0, {"npz", "images", "labels",
    "config", "experiment", "step", "output_dir", "seconds"}; on other processes the same without the arrays."""
    start = time.perf_counter()
    local_devices = jax.local_devices()[:eval_config.num_devices or None]
    evaluate_configs.validate(eval_config, num_devices=len(local_devices))
    run_config = load_run_config(workdir)
    config = sampling_config(run_config, eval_config)
    experiment = diffusion_experiment.build_experiment(config, local_devices)
    latent = tuple(experiment.source.image_shape)[-1] not in (1, 3)
    decoder = (make_latent_decoder(vae_path_for(eval_config, run_config), eval_config.vae.dtype,
                                   diffusion_experiment.latent_normalization(config)) if latent else None)
    params, step = restore_params(experiment, workdir, eval_config.step, eval_config.use_ema)
    output_dir = output_dir or eval_config.output_dir or default_output_dir(workdir, eval_config, config, step)
    share_dir = files.join(output_dir, "shares")
    files.path(share_dir).mkdir(parents=True, exist_ok=True)
    process, processes = jax.process_index(), jax.process_count()
    seconds = {"setup": time.perf_counter() - start}
    tick = time.perf_counter()
    images, labels, indices = generate_samples(
        make_sharded_sampler(experiment, decoder), params, num_samples=eval_config.num_samples,
        batch_size=eval_config.batch_size, num_classes=config.data.num_classes, key=jax.random.key(eval_config.seed),
        mesh=experiment.mesh, labels=eval_config.labels, process_index=process, process_count=processes,
        show_progress=show_progress and process == 0)
    share_path = files.join(share_dir, f"process_{process:03d}.npz")
    if images is not None:
        buffer = io.BytesIO()
        np.savez(buffer, images=images, labels=labels, indices=indices)
        files.write_bytes_atomic(share_path, buffer.getvalue())
    print(f"process {process} of {processes}: sampled {len(indices)} of {eval_config.num_samples} images",
          flush=True)
    parallel.barrier("jaxrep_sample_shares_written")
    seconds["sampling"] = time.perf_counter() - tick
    result = {"config": config, "experiment": experiment, "step": step, "output_dir": output_dir, "seconds": seconds}
    if process == 0:
        share_paths = [p for p in (files.join(share_dir, f"process_{i:03d}.npz") for i in range(processes))
                       if files.path(p).exists()]
        images, labels = merge_shares(share_paths, eval_config.num_samples)
        npz_path = files.join(output_dir, "samples_{}x{}x{}x3.npz".format(*images.shape[:3]))
        write_sample_file(npz_path, images, labels)
        files.path(share_dir).rmtree()
        grid_count = min(eval_config.grid_images, len(images))
        save_image_grid(files.join(output_dir, "samples_grid.png"), images[:grid_count],
                        upscale=2 if images.shape[1] <= 64 else 1, ncols=int(np.ceil(np.sqrt(grid_count))))
        result.update(npz=npz_path, images=images, labels=labels)
        files.write_json_atomic(files.join(output_dir, "sampling.json"),
                          {"step": int(step), "num_samples": int(len(images)), "processes": processes,
                           "devices_per_process": len(local_devices), "labels": eval_config.labels,
                           "sample": dict(config.sample.to_dict()), "samples_npz": npz_path,
                           "seconds": {name: round(value, 2) for name, value in seconds.items()}})
        print(f"wrote {npz_path} ({len(images)} samples from {processes} process(es))", flush=True)
    return result


def default_output_dir(workdir: str, eval_config, sample_config, step: int) -> str:
    sample = sample_config.sample
    sampler = f"ode-{sample.ode_method}{sample.num_steps}" if sample.sampler == "ode" else f"sde{sample.num_steps}"
    weights = "" if eval_config.use_ema else "_raw"
    name = (f"step{step:07d}{weights}_{sampler}_cfg{sample.cfg_scale:g}_{eval_config.features.extractor}"
            f"_n{eval_config.num_samples}_seed{eval_config.seed}")
    return files.join(workdir, "eval", name)


def run(eval_config, workdir: str) -> dict:
    eval_config = eval_config.copy_and_resolve_references()
    eval_config.sample_only = True  # this entrypoint never scores: no feature extractor is needed
    result = sample(eval_config, workdir)
    parallel.barrier("jaxrep_sample_done")
    return result

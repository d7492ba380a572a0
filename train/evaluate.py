"""Evaluate a diffusion work directory: sample, write the ADM sample file, FD / precision / recall / density / coverage.

  python -m train.evaluate --config=configs/evaluate.py:cpu --workdir=workdirs/diffusion_cpu

Steps (all outputs in one directory, `<workdir>/eval/<description>/` unless `output_dir` is set):
1. Rebuild the run from its `config.json`, restore the chosen checkpoint (`step`, default the latest) against the
   current mesh and take its EMA weights.
2. Sample `num_samples` images with the run's sampler, or the `sample.*` overrides (sampler, steps, guidance),
   batch by batch, each batch split over the mesh's `data` axis, with a progress bar. Labels cycle through the
   classes (balanced); batch b uses noise key fold_in(seed key, b), so results do not depend on the device count.
3. Write `samples_<N>x<H>x<W>x3.npz`: `arr_0` uint8 (N, H, W, 3) NHWC and `arr_1` the labels, the layout of
   ADM's `evaluator.py` (guided-diffusion's sample files; grey images are repeated to RGB there), and
   `samples_grid.png`.
4. Features of the uint8 samples (in-repo eval net, or pytorch-fid's Inception for standard FID) and of the real
   training images (computed once, cached in `reference.cache_dir`); Frechet distance on all samples, precision /
   recall / density / coverage (k = 5) on up to `prdc_max_samples`.
5. `results.json` (metrics, settings, paths, timings) and one printed line with FD/P/R/D/C.

The eval net for the procedural datasets is trained on first use (train/eval_net.py, about a minute). Evaluation
is single-host: one process, any number of local devices.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from absl import app, flags, logging
from ml_collections import config_flags

import jax
import ml_collections
import numpy as np

from configs import diffusion as diffusion_configs
from configs import eval_net as eval_net_configs
from configs import evaluate as evaluate_configs
from jaxrep import parallel
from jaxrep.checkpoint import Checkpointer, abstract_like
from jaxrep.config_checks import ConfigError
from jaxrep.logging import progress_bar, save_image_grid, to_uint8
from jaxrep.metrics import frechet_distance, prdc
from jaxrep.metrics.features import cached_reference_features, extract_features, load_feature_extractor
from train import diffusion as train_diffusion
from train import eval_net as train_eval_net
from train.factor_training import PROCEDURAL_SOURCES


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The run's resolved config from `<workdir>/config.json`, over today's defaults (fields added since the run
    keep their defaults, so older work directories still load)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: {workdir!r} is not a train.diffusion work directory")
    with open(path) as file:
        saved = json.load(file)
    config = diffusion_configs.base_config()
    config.update(saved)
    return config


def sampling_config(run_config: ml_collections.ConfigDict, eval_config) -> ml_collections.ConfigDict:
    """The run's config with the evaluation's sample overrides, devices and batch size (the training batch size is
    irrelevant here, and validation requires it to split over the mesh)."""
    config = run_config.copy_and_resolve_references()
    for name, value in eval_config.sample.items():
        if value is not None:
            config.sample[name] = value
    config.num_devices = eval_config.num_devices
    config.batch_size = eval_config.batch_size
    return config


def restore_params(experiment: train_diffusion.Experiment, workdir: str, step: int, use_ema: bool):
    """(params, step) of checkpoint `step` (-1: latest), restored replicated on the experiment's mesh."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
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


def make_sharded_sampler(experiment: train_diffusion.Experiment):
    """The run's `sample(params, labels (B,), key) -> (B, H, W, C)` jitted with labels and images split over `data`."""
    mesh = experiment.mesh
    replicated, batch = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
    sample = train_diffusion.make_sampler(experiment.model, experiment.config)
    return jax.jit(sample, in_shardings=(replicated, batch, replicated), out_shardings=batch)


def generate_samples(sample_fn, params: Any, *, num_samples: int, batch_size: int, num_classes: int,
                     key: jax.Array, mesh: jax.sharding.Mesh, show_progress: bool = True
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Samples uint8 images (N, H, W, C) with labels (N,) cycling through the classes, batch by batch.

    The last batch is padded to `batch_size` (one compile) and trimmed.
    """
    labels = (np.arange(num_samples) % num_classes).astype(np.int32)
    sharding = parallel.batch_sharding(mesh)
    images = []
    bar = progress_bar(num_samples, desc="sample", unit="img", show=show_progress)
    try:
        for index, start in enumerate(range(0, num_samples, batch_size)):
            batch_labels = labels[start:start + batch_size]
            count = len(batch_labels)
            padded = np.pad(batch_labels, (0, batch_size - count))
            batch = sample_fn(params, jax.device_put(padded, sharding), jax.random.fold_in(key, index))
            images.append(to_uint8(np.asarray(batch))[:count])
            bar.update(count)
    finally:
        bar.close()
    return np.concatenate(images), labels


def write_sample_file(path: str, images: np.ndarray, labels: np.ndarray) -> None:
    """ADM's sample layout: `arr_0` uint8 (N, H, W, 3) NHWC, `arr_1` int64 labels (N,)."""
    if images.shape[-1] == 1:  # ADM's Inception reads RGB
        images = np.repeat(images, 3, axis=-1)
    np.savez(path, arr_0=images, arr_1=labels.astype(np.int64))


def reference_selection(source, num_images: int) -> np.ndarray:
    """Indices of the real images behind the reference statistics: all of them, or a fixed random subset (the
    procedural index order is structured: dSprites' first 50k images all have one shape)."""
    count = len(source) if num_images == 0 else min(num_images, len(source))
    if count == len(source):
        return np.arange(count)
    return np.sort(np.random.default_rng(0).permutation(len(source))[:count])


def reference_description(config, indices: np.ndarray) -> dict:
    """Identity of the reference data for the cache key (for user files: path, size and modification time)."""
    description = {"data_source": config.data.source, "num_images": int(len(indices)),
                   "selection": "all" if indices[-1] == len(indices) - 1 else "permutation(seed 0)"}
    if config.data.source == "arrays":
        stat = os.stat(config.data.path)
        description.update(path=os.path.abspath(config.data.path), size=stat.st_size, mtime=stat.st_mtime)
    return description


def uint8_batches(source, indices: np.ndarray, batch_size: int, show_progress: bool = True):
    """uint8 batches of the real images at `indices`, with a progress bar (created only when iterated)."""
    bar = progress_bar(len(indices), desc="reference features", unit="img", show=show_progress)
    try:
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            yield to_uint8(np.stack([np.asarray(source[int(i)]["image"]) for i in chunk]))
            bar.update(len(chunk))
    finally:
        bar.close()


def feature_extractor_for(eval_config, run_config, show_progress: bool = True):
    """Loads the configured extractor; the eval net of a procedural dataset is trained first if missing."""
    features = eval_config.features
    if features.extractor == "inception":
        return load_feature_extractor("inception", features.inception_path)
    source_name = run_config.data.source
    path = features.eval_net_path or os.path.join("workdirs", f"eval_net_{source_name}")
    if not os.path.exists(path):
        if source_name not in PROCEDURAL_SOURCES:
            raise FileNotFoundError(f"features.eval_net_path: no eval net at {path!r}; for user data train one "
                                    "on it or use features.extractor='inception'")
        print(f"no eval net at {path}: training one (python -m train.eval_net, about a minute)", flush=True)
        train_eval_net.train_eval_net(eval_net_configs.get_config(source_name), path, show_progress=show_progress)
    extractor = load_feature_extractor("eval_net", path)
    if extractor.metadata.get("data_source") != source_name:
        print(f"warning: the eval net at {path} was trained on {extractor.metadata.get('data_source')!r}, "
              f"the run on {source_name!r}", flush=True)
    return extractor


def default_output_dir(workdir: str, eval_config, sample_config, step: int) -> str:
    sample = sample_config.sample
    sampler = f"ode-{sample.ode_method}{sample.num_steps}" if sample.sampler == "ode" else f"sde{sample.num_steps}"
    weights = "" if eval_config.use_ema else "_raw"
    name = (f"step{step:07d}{weights}_{sampler}_cfg{sample.cfg_scale:g}_{eval_config.features.extractor}"
            f"_n{eval_config.num_samples}_seed{eval_config.seed}")
    return os.path.join(workdir, "eval", name)


def evaluate(eval_config, workdir: str, *, show_progress: bool = True) -> dict:
    """Runs the whole evaluation (module docstring) and returns the results dict also written to results.json."""
    if jax.process_count() > 1:
        raise NotImplementedError("train.evaluate runs in one process (any number of local devices)")
    start = time.perf_counter()
    num_devices = eval_config.num_devices or jax.local_device_count()
    evaluate_configs.validate(eval_config, num_devices=num_devices)
    run_config = load_run_config(workdir)
    config = sampling_config(run_config, eval_config)
    experiment = train_diffusion.build_experiment(config)
    image_shape = tuple(experiment.source.image_shape)
    if image_shape[-1] not in (1, 3):
        raise ValueError(f"the run models {image_shape[-1]}-channel data (latents?); evaluation needs pixel-space "
                         "samples (decode latents to images first)")
    params, step = restore_params(experiment, workdir, eval_config.step, eval_config.use_ema)
    extractor = feature_extractor_for(eval_config, run_config, show_progress)
    output_dir = eval_config.output_dir or default_output_dir(workdir, eval_config, config, step)
    os.makedirs(output_dir, exist_ok=True)
    seconds = {"setup": time.perf_counter() - start}

    tick = time.perf_counter()
    images, labels = generate_samples(
        make_sharded_sampler(experiment), params, num_samples=eval_config.num_samples,
        batch_size=eval_config.batch_size, num_classes=config.data.num_classes,
        key=jax.random.key(eval_config.seed), mesh=experiment.mesh, show_progress=show_progress)
    seconds["sampling"] = time.perf_counter() - tick
    npz_path = os.path.join(output_dir, "samples_{}x{}x{}x3.npz".format(*images.shape[:3]))
    write_sample_file(npz_path, images, labels)
    grid_path = os.path.join(output_dir, "samples_grid.png")
    grid_count = min(eval_config.grid_images, len(images))
    save_image_grid(grid_path, images[:grid_count], upscale=2, ncols=int(np.ceil(np.sqrt(grid_count))))

    tick = time.perf_counter()
    batch_size, keep = eval_config.features.batch_size, eval_config.prdc_max_samples
    fake = extract_features(extractor, (images[i:i + batch_size] for i in range(0, len(images), batch_size)),
                            batch_size=batch_size, mesh=experiment.mesh, keep=keep)
    seconds["features"] = time.perf_counter() - tick

    tick = time.perf_counter()
    indices = reference_selection(experiment.source, eval_config.reference.num_images)
    real, cache_path, cache_hit = cached_reference_features(
        extractor, lambda: uint8_batches(experiment.source, indices, batch_size, show_progress),
        cache_dir=eval_config.reference.cache_dir, description=reference_description(config, indices),
        batch_size=batch_size, mesh=experiment.mesh, keep=keep)
    seconds["reference"] = time.perf_counter() - tick

    tick = time.perf_counter()
    fd = frechet_distance(real.statistics.mean, real.statistics.covariance, fake.statistics.mean,
                          fake.statistics.covariance)
    knn = prdc(real.features, fake.features, k=eval_config.prdc_k)
    seconds["metrics"] = time.perf_counter() - tick
    seconds["total"] = time.perf_counter() - start

    results = {
        "fd": fd, **knn,
        "workdir": os.path.abspath(workdir), "step": int(step), "weights": "ema" if eval_config.use_ema else "raw",
        "num_samples": int(len(images)), "seed": int(eval_config.seed), "sample": dict(config.sample.to_dict()),
        "feature_extractor": {"kind": extractor.kind, "dim": extractor.dim, "fingerprint": extractor.fingerprint,
                              "path": extractor.metadata.get("path", "")},
        "reference": {**reference_description(config, indices), "cache": os.path.abspath(cache_path),
                      "cache_hit": cache_hit},
        "prdc_k": int(eval_config.prdc_k), "prdc_num_real": int(len(real.features)),
        "prdc_num_fake": int(len(fake.features)), "samples_npz": os.path.abspath(npz_path),
        "grid_png": os.path.abspath(grid_path), "num_devices": int(experiment.mesh.size),
        "sampling_images_per_s": len(images) / seconds["sampling"],
        "seconds": {name: round(value, 2) for name, value in seconds.items()},
    }
    with open(os.path.join(output_dir, "results.json"), "w") as file:
        json.dump(results, file, indent=2)
    print(f"step {step} ({results['weights']}), {len(images)} samples, {extractor.kind} features: FD {fd:.4f}  "
          f"precision {knn['precision']:.4f}  recall {knn['recall']:.4f}  density {knn['density']:.4f}  "
          f"coverage {knn['coverage']:.4f}  ({seconds['total']:.0f} s; {output_dir})", flush=True)
    return results


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    try:
        evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
    except (ConfigError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", "configs/evaluate.py:cpu", "Config file and preset.")
    flags.DEFINE_string("workdir", "workdirs/diffusion_cpu", "The train.diffusion work directory to evaluate.")
    app.run(main)

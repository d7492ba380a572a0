"""Evaluate a diffusion work directory: sample, write the ADM sample file, FD / precision / recall / density / coverage.

  python -m train.evaluate --config=configs/evaluate.py:cpu --workdir=workdirs/diffusion_cpu

Steps (all outputs in one directory, `<workdir>/eval/<description>/` unless `output_dir` is set):
1-3. `train.sample`: every process restores the checkpoint's EMA weights (`step`, default the latest), samples its
   share of the `num_samples` images with the run's sampler or the `sample.*` overrides (batch b uses noise key
   fold_in(seed key, b); labels balanced by default), decodes latent runs through the SD-VAE, and process 0 merges
   the shares into `samples_<N>x<H>x<W>x3.npz` (`arr_0` uint8 (N, H, W, 3) NHWC, `arr_1` the labels: the layout
   of ADM's `evaluator.py`; grey images are repeated to RGB there) and `samples_grid.png`. `sample_only` stops here.
4. On process 0: features of the uint8 samples (in-repo eval net, or pytorch-fid's Inception for standard FID) and
   of the real training images (computed once, cached in `reference.cache_dir`); Frechet distance on all
   samples, precision / recall / density / coverage (k = 5) on up to `prdc_max_samples`.
5. `results.json` (metrics, settings, paths, timings) and one printed line with FD/P/R/D/C.

The eval net for the procedural datasets is a prerequisite (`prerequisites`): `train.evaluate` trains it first, as
a stage of its own, when it is missing (`train.eval_net`; a few minutes on 2 cores).
Sampling runs on all devices of all processes (`distributed.*`); the features and metrics are computed on process 0.
A latent run's reference images are the crops stored in its prepared dataset.
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np

from configs import eval_net as eval_net_configs
from configs import evaluate as evaluate_configs
from configs._common import FACTOR_SOURCES
from jaxrep import files, parallel
from jaxrep.config_checks import ConfigError
from jaxrep.data.latent_records import DatasetError, read_manifest
from jaxrep.experiments import eval_net as eval_net_experiment
from jaxrep.experiments import sample as sample_experiment
from jaxrep.experiments.prerequisites import Prerequisite, factor_network
from jaxrep.experiments.run_config import load_run_config
from jaxrep.metrics import frechet_distance, prdc
from jaxrep.run.logging import progress_bar, to_uint8
from jaxrep.weights.features import FeatureSet, cached_reference_features, extract_features, load_feature_extractor

# Errors that mean bad input or a run that cannot go on (the command line prints them as one line).
EXPECTED_ERRORS = (FileNotFoundError, DatasetError)


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
        stat = files.path(config.data.path).stat()
        description.update(path=str(files.path(config.data.path)), size=stat.length, mtime=stat.mtime)
    if config.data.source == "latent_records":
        shards = read_manifest(config.data.path)["shards"]
        description.update(path=str(files.path(config.data.path)), shards_sha256=[s["sha256"] for s in shards])
    return description


def real_image(source, index: int) -> np.ndarray:
    """The uint8 real image behind example `index`: the stored crop of a prepared latent dataset, else the
    source's pixel-space image."""
    if hasattr(source, "pixels"):
        return source.pixels(index)
    image = np.asarray(source[index]["image"])
    if image.shape[-1] not in (1, 3):
        raise ConfigError("data.source: the reference images of a latent run come from a prepared dataset "
                          "(data.source='latent_records', train.prepare_latents); a .npy of latents holds none")
    return to_uint8(image)


def uint8_batches(source, indices: np.ndarray, batch_size: int, show_progress: bool = True):
    """uint8 batches of the real images at `indices`, with a progress bar (created only when iterated)."""
    bar = progress_bar(len(indices), desc="reference features", unit="img", show=show_progress)
    try:
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            yield np.stack([real_image(source, int(i)) for i in chunk])
            bar.update(len(chunk))
    finally:
        bar.close()


def eval_net_path(eval_config, run_config) -> str:
    """`features.eval_net_path`, else the default `workdirs/eval_net_<data source>`."""
    return eval_config.features.eval_net_path or files.join("workdirs", f"eval_net_{run_config.data.source}")


def prerequisites(eval_config, workdir: str) -> list[Prerequisite]:
    """The runs an evaluation needs made first (`jaxrep.experiments.prerequisites`): the evaluation network of a
    run on procedural data or Fashion-MNIST, when it scores with the eval net. The config is validated first."""
    evaluate_configs.validate(eval_config, num_devices=len(jax.local_devices()[:eval_config.num_devices or None]))
    if eval_config.sample_only or eval_config.features.extractor != "eval_net":
        return []
    run_config = load_run_config(workdir)
    if run_config.data.source not in FACTOR_SOURCES:
        return []
    return [factor_network("features.eval_net_path", "train.eval_net", "configs/eval_net.py",
                           eval_net_configs.get_config, eval_net_experiment.train_eval_net, run_config.data,
                           eval_net_path(eval_config, run_config))]


def feature_extractor_for(eval_config, run_config):
    """Loads the configured extractor (a missing eval net is a prerequisite: `prerequisites`)."""
    features = eval_config.features
    if features.extractor == "inception":
        return load_feature_extractor("inception", features.inception_path)
    source_name = run_config.data.source
    path = eval_net_path(eval_config, run_config)
    if not files.path(path).exists():
        fix = ("make it first with `python -m train.eval_net` (train.evaluate does so itself)"
               if source_name in FACTOR_SOURCES
               else "for user data train one on it or use features.extractor='inception'")
        raise FileNotFoundError(f"features.eval_net_path: no eval net at {path!r}; {fix}")
    extractor = load_feature_extractor("eval_net", path)
    if extractor.metadata.get("data_source") != source_name:
        print(f"warning: the eval net at {path} was trained on {extractor.metadata.get('data_source')!r}, "
              f"the run on {source_name!r}", flush=True)
    return extractor


def reference_set(eval_config, config, experiment, extractor, show_progress: bool = True) -> tuple[FeatureSet, dict]:
    """The reference images' features (`reference_selection` of the run's data; cached on disk by content) and
    their description (selection, cache file, whether it was a cache hit)."""
    batch_size = eval_config.features.batch_size
    indices = reference_selection(experiment.source, eval_config.reference.num_images)
    real, cache_path, cache_hit = cached_reference_features(
        extractor, lambda: uint8_batches(experiment.source, indices, batch_size, show_progress),
        cache_dir=eval_config.reference.cache_dir, description=reference_description(config, indices),
        batch_size=batch_size, mesh=experiment.mesh, keep=eval_config.prdc_max_samples)
    return real, {**reference_description(config, indices), "cache": str(files.path(cache_path)),
                  "cache_hit": cache_hit}


def sample_features(images: np.ndarray, extractor, eval_config, mesh) -> FeatureSet:
    """The features of uint8 samples (N, H, W, C), batch-sharded over `mesh`."""
    batch_size = eval_config.features.batch_size
    return extract_features(extractor, (images[i:i + batch_size] for i in range(0, len(images), batch_size)),
                            batch_size=batch_size, mesh=mesh, keep=eval_config.prdc_max_samples)


def scores(real: FeatureSet, fake: FeatureSet, eval_config) -> dict:
    """FD (Heusel et al. 2017) and precision / recall / density / coverage (Naeem et al. 2020, k = `prdc_k`)."""
    fd = frechet_distance(real.statistics.mean, real.statistics.covariance, fake.statistics.mean,
                          fake.statistics.covariance)
    return {"fd": fd, **prdc(real.features, fake.features, k=eval_config.prdc_k)}


def evaluate(eval_config, workdir: str, *, show_progress: bool = True) -> dict | None:
    """Runs the whole evaluation (module docstring); returns the results dict also written to results.json (on
    process 0; other processes sample their share and return None)."""
    start = time.perf_counter()
    evaluate_configs.validate(eval_config, num_devices=len(jax.local_devices()[:eval_config.num_devices or None]))
    scoring = jax.process_index() == 0 and not eval_config.sample_only
    # The extractor first: a missing weight file fails before minutes of sampling.
    extractor = feature_extractor_for(eval_config, load_run_config(workdir)) if scoring else None
    sampled = sample_experiment.sample(eval_config, workdir, show_progress=show_progress)
    if not scoring:
        return None
    config, experiment, step, output_dir = (sampled[k] for k in ("config", "experiment", "step", "output_dir"))
    images, npz_path = sampled["images"], sampled["npz"]
    seconds = dict(sampled["seconds"])
    grid_path = files.join(output_dir, "samples_grid.png")

    tick = time.perf_counter()
    fake = sample_features(images, extractor, eval_config, experiment.mesh)
    seconds["features"] = time.perf_counter() - tick

    tick = time.perf_counter()
    real, reference = reference_set(eval_config, config, experiment, extractor, show_progress)
    seconds["reference"] = time.perf_counter() - tick

    tick = time.perf_counter()
    knn = scores(real, fake, eval_config)
    fd = knn.pop("fd")
    seconds["metrics"] = time.perf_counter() - tick
    seconds["total"] = time.perf_counter() - start

    results = {
        "fd": fd, **knn,
        "workdir": str(files.path(workdir)), "step": int(step), "weights": "ema" if eval_config.use_ema else "raw",
        "num_samples": int(len(images)), "seed": int(eval_config.seed), "sample": dict(config.sample.to_dict()),
        "feature_extractor": {"kind": extractor.kind, "dim": extractor.dim, "fingerprint": extractor.fingerprint,
                              "path": extractor.metadata.get("path", "")},
        "reference": reference,
        "prdc_k": int(eval_config.prdc_k), "prdc_num_real": int(len(real.features)),
        "prdc_num_fake": int(len(fake.features)), "samples_npz": npz_path,
        "grid_png": grid_path, "num_devices": int(experiment.mesh.size),
        "sampling_images_per_s": len(images) / seconds["sampling"],
        "seconds": {name: round(value, 2) for name, value in seconds.items()},
    }
    files.path(files.join(output_dir, "results.json")).write_text(json.dumps(results, indent=2))
    print(f"step {step} ({results['weights']}), {len(images)} samples, {extractor.kind} features: FD {fd:.4f}  "
          f"precision {knn['precision']:.4f}  recall {knn['recall']:.4f}  density {knn['density']:.4f}  "
          f"coverage {knn['coverage']:.4f}  ({seconds['total']:.0f} s; {output_dir})", flush=True)
    return results


def run(eval_config, workdir: str) -> dict | None:
    results = evaluate(eval_config, workdir)
    parallel.barrier("jaxrep_evaluate_done")  # the other processes wait for process 0's scoring
    return results

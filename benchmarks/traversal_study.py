"""Potential-flow traversals vs their baselines on dSprites, several seeds: writes the committed results
(`--results`: results.json and seed 0's pictures) and, from them, docs/results/traversal.md
(`benchmarks.traversal_report`, which regenerates the report from the results alone).

  python -m benchmarks.traversal_study --vae_steps=3000 --traversal_steps=3000   # 1 h on 2 cores (the committed study)
  python -m benchmarks.traversal_study --vae_steps=200 --traversal_steps=200 --results=/tmp/t --output=/tmp/t.md

Two comparisons, each in the entrypoints' own code paths (`train.vae`, `train.traversal`):
1. From scratch: the plain VAE (`configs/vae.py:plain`) vs the VAE trained with the potential-flow
   regulariser on transformation sequences (`:regularized`), both for `--vae_steps` steps, on MIG, DCI, the
   importance-weighted NLL and (regularised only: it has potentials) VP.
2. Frozen generator: on each seed's plain VAE, K = 5 potentials (`configs/traversal.py:potential`) vs K = 5
   linear directions trained with the same classifier (`:linear`), on VP. A linear direction moves one
   latent unit per step, a potential as far as it learned to; VP rises with the size of the change, so the
   linear directions are also evaluated at the step that matches the potentials' mean latent displacement
   ("linear, matched").
Runs live in `--workdir/seed<k>/<run>` and resume from their checkpoints; a finished run is not redone.
A persistent compilation cache in `--workdir/jax_cache` lets the runs share the programs they compile.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import platform
import shutil
import sys
import time

import jax
import numpy as np
from absl import app, flags, logging

from benchmarks import traversal_report
from configs import traversal as traversal_configs
from configs import vae as vae_configs
from jaxrep.experiments import traversal as traversal_experiment
from jaxrep.experiments import vae as vae_experiment
from jaxrep.run.checkpoint import Checkpointer, abstract_like
from jaxrep.run.logging import read_metrics

_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds (root keys 0 .. seeds - 1).")
_VAE_STEPS = flags.DEFINE_integer("vae_steps", 500, "Steps per VAE run, plain and regularised alike.")
_TRAVERSAL_STEPS = flags.DEFINE_integer("traversal_steps", 0, "Steps per traversal run; 0 keeps the preset's.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/traversal_study", "Root of the runs' work directories.")
_RESULTS = flags.DEFINE_string("results", "docs/results/traversal_study",
                                "Directory for results.json and the pictures (committed; the report reads only them).")
_OUTPUT = flags.DEFINE_string("output", "docs/results/traversal.md", "Markdown report (`benchmarks.traversal_report`).")



def finished(workdir: str, total_steps: int) -> dict | None:
    path = os.path.join(workdir, vae_experiment.FINAL_METRICS)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        metrics = json.load(f)
    return metrics if metrics["step"] == total_steps else None


TIMING = "study_seconds.json"


def run(train_fn, config, workdir: str, timings: dict, name: str) -> dict:
    """Trains and evaluates unless the run already finished; returns its final metrics. The wall time of
    the invocation that trained it is kept in the run's directory, so a re-invocation still reports it."""
    metrics = finished(workdir, config.total_steps)
    if metrics is None:
        start = time.perf_counter()
        train_fn(config, workdir)
        with open(os.path.join(workdir, TIMING), "w") as f:
            json.dump({"seconds": time.perf_counter() - start}, f)
        metrics = finished(workdir, config.total_steps)
    if os.path.isfile(os.path.join(workdir, TIMING)):
        with open(os.path.join(workdir, TIMING)) as f:
            timings[name] = json.load(f)["seconds"]
    return metrics


def final_accuracy(workdir: str, last: int = 5) -> float:
    """Mean training classifier accuracy over the last `last` logs (noisy per batch)."""
    values = [r["accuracy"] for r in read_metrics(workdir) if "accuracy" in r]
    return float(np.mean(values[-last:]))


def matched_linear(config, workdir: str, potential_change: float, output: str) -> dict:
    """Re-evaluates a trained linear run with the step size whose T steps move `potential_change`."""
    metrics = finished(output, config.total_steps)
    if metrics is not None:
        return metrics
    config = copy.deepcopy(config)
    config.eval.step_size = potential_change / config.traversal.num_steps
    experiment = traversal_experiment.build_experiment(config)
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), save_every=1)
    state, _ = checkpointer.restore(abstract_like(experiment.state))
    checkpointer.close()
    os.makedirs(output, exist_ok=True)
    return traversal_experiment.evaluate(experiment, state.ema_params, output, int(state.step))


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    root = _WORKDIR.value
    jax.config.update("jax_compilation_cache_dir", os.path.join(root, "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    seeds = list(range(_SEEDS.value))
    vae_results = {"plain": [], "regularized": []}
    traversal_results = {"potential": [], "linear": [], "linear, matched": []}
    timings: dict[str, float] = {}
    configs = {}
    for seed in seeds:
        base = os.path.join(root, f"seed{seed}")
        for method in ("plain", "regularized"):
            config = vae_configs.get_config(method)
            config.seed = seed
            config.total_steps = _VAE_STEPS.value
            configs[method] = config
            vae_results[method].append(run(vae_experiment.train_and_evaluate, config, os.path.join(base, f"vae_{method}"),
                                           timings, f"seed{seed}/vae_{method}"))
        for family in ("potential", "linear"):
            config = traversal_configs.get_config(family)
            config.seed = seed
            config.vae.workdir = os.path.join(base, "vae_plain")
            config.total_steps = _TRAVERSAL_STEPS.value or config.total_steps
            configs[family] = config
            workdir = os.path.join(base, f"traversal_{family}")
            metrics = run(traversal_experiment.train_and_evaluate, config, workdir, timings, f"seed{seed}/{family}")
            traversal_results[family].append(dict(metrics, train_accuracy=final_accuracy(workdir)))
        linear = traversal_results["linear"][-1]
        matched = matched_linear(configs["linear"], os.path.join(base, "traversal_linear"),
                                 traversal_results["potential"][-1]["latent_change"],
                                 os.path.join(base, "traversal_linear_matched"))
        traversal_results["linear, matched"].append(dict(matched, train_accuracy=linear["train_accuracy"]))
        print(f"seed {seed}: " + json.dumps({"vae": {m: r[-1] for m, r in vae_results.items()},
                                             "traversal": {f: r[-1] for f, r in traversal_results.items()}}),
              flush=True)
    results = {"command": "python -m benchmarks.traversal_study " + " ".join(sys.argv[1:]),
               "date": datetime.date.today().isoformat(), "machine": machine(), "seeds": seeds,
               "configs": {name: config.to_dict() for name, config in configs.items()},
               "vae": vae_results, "traversal": traversal_results, "timings": timings}
    os.makedirs(_RESULTS.value, exist_ok=True)
    with open(os.path.join(_RESULTS.value, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    copy_pictures(root, _RESULTS.value, configs)
    traversal_report.write_report(results, _OUTPUT.value, _RESULTS.value)


def copy_pictures(root: str, results_dir: str, configs: dict) -> None:
    """Copies seed 0's pictures (`traversal_report.PICTURES`) into the results directory: the plain VAE's
    reconstructions, the regularised VAE's potentials, the potentials and the linear directions on the frozen VAE."""
    sources = {"traversal_vae_plain.png": ("vae_plain", "reconstructions.png", "plain"),
               "traversal_vae_regularized.png": ("vae_regularized", "strips/{step:07d}_0.png", "regularized"),
               "traversal_traversal_potential.png": ("traversal_potential", "strips/{step:07d}_0.png", "potential"),
               "traversal_traversal_linear.png": ("traversal_linear", "strips/{step:07d}_0.png", "linear")}
    for name, (run_name, picture, preset) in sources.items():
        source = os.path.join(root, "seed0", run_name, picture.format(step=configs[preset].total_steps))
        if os.path.isfile(source):
            shutil.copyfile(source, os.path.join(results_dir, name))


def machine() -> dict:
    return {"cpu": cpu_name(), "arch": platform.machine(), "cores": os.cpu_count(), "jax": jax.__version__,
            "backend": jax.default_backend()}


if __name__ == "__main__":
    app.run(main)

"""Potential-flow traversals vs their baselines on dSprites, several seeds; writes docs/results/traversal.md.

  nice -n 5 python -m benchmarks.traversal_study --vae_steps=200 --traversal_steps=200   # 22 min on 2 busy cores
  python -m benchmarks.traversal_study --seeds=5 --vae_steps=5000 --traversal_steps=3000

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
_OUTPUT = flags.DEFINE_string("output", "docs/results/traversal.md", "Markdown report.")

VAE_METRICS = ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "nll", "vp")
TRAVERSAL_METRICS = ("vp", "latent_change", "image_change", "train_accuracy")


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


def fmt(values, digits: int = 3) -> str:
    values = np.asarray(values, dtype=np.float64)
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


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
    write_report(_OUTPUT.value, seeds, configs, vae_results, traversal_results, timings)
    copy_pictures(root, _OUTPUT.value, configs)


# Pictures of seed 0 that go next to the report: (run, picture in the run's directory, caption). The plain
# VAE has no traversals, so its picture is its reconstructions (top row data, bottom row reconstructions).
PICTURES = (("vae_regularized", "strips/{step:07d}_0.png", "regularised VAE, its K = 5 potentials (from scratch)"),
            ("vae_plain", "reconstructions.png", "plain VAE, reconstructions (no traversals)"),
            ("traversal_potential", "strips/{step:07d}_0.png", "potentials on the frozen plain VAE"),
            ("traversal_linear", "strips/{step:07d}_0.png", "linear directions on the frozen plain VAE"))


def picture_name(run_name: str) -> str:
    return f"traversal_{run_name}.png"


def copy_pictures(root: str, report: str, configs: dict) -> None:
    """Copies seed 0's picture of each run in PICTURES next to the report."""
    for run_name, picture, _ in PICTURES:
        step = configs["plain" if run_name.startswith("vae") else "potential"].total_steps
        source = os.path.join(root, "seed0", run_name, picture.format(step=step))
        if os.path.isfile(source):
            shutil.copyfile(source, os.path.join(os.path.dirname(os.path.abspath(report)), picture_name(run_name)))


def write_report(path: str, seeds: list[int], configs: dict, vae_results: dict, traversal_results: dict,
                 timings: dict) -> None:
    plain, regularized = configs["plain"], configs["regularized"]
    potential = configs["potential"]
    lines = [
        "# Potential-flow latent traversals on dSprites (jaxrep)",
        "",
        f"Generated by `python -m benchmarks.traversal_study {' '.join(sys.argv[1:])}` on "
        f"{datetime.date.today().isoformat()}, "
        f"{cpu_name()} ({platform.machine()}), JAX {jax.__version__} backend {jax.default_backend()} "
        f"({os.cpu_count()} cores visible, shared "
        f"with other jobs). {len(seeds)} seeds (root keys {seeds[0]}..{seeds[-1]}); "
        + (f"{len(timings)} runs, {sum(timings.values()) / 60:.1f} min of wall time in total "
           f"({min(timings.values()):.0f}-{max(timings.values()):.0f} s per run, compilation and evaluation "
           "included; per run: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items()) + ")."
           if timings else "no run timings recorded."),
        "",
        f"**Budget**: CPU-scale runs: {plain.total_steps} VAE steps at batch {plain.batch_size} "
        f"({plain.total_steps * plain.batch_size // 1000}k images, about "
        f"{plain.total_steps * plain.batch_size / 7680:.1f} passes over the 7680-image grid) and "
        f"{potential.total_steps} traversal steps at batch {potential.batch_size}. The official from-scratch "
        f"runs train 100k iterations at batch 256 ({100_000 * 256 / (plain.total_steps * plain.batch_size):,.0f}x "
        "more examples) and the pretrained-VAE traversals 10k at batch 256 "
        f"({10_000 * 256 / (potential.total_steps * potential.batch_size):,.0f}x). These numbers describe the "
        "methods early in training, not at convergence.",
        "",
        "## Setup",
        "",
        "- Data: the official subgrid of procedural dSprites (3 shapes x 5 scales x 8 orientations x 8 x 8 "
        "positions = 7680 images, `jaxrep/traversal/sequences.py`).",
        f"- VAE: Burgess et al. conv VAE, channels {tuple(plain.model.channels)}, hidden {plain.model.hidden_dim}, "
        f"d = {plain.model.latent_dim}, Bernoulli likelihood, Adam {plain.optim.learning_rate:g}.",
        f"- Regularised VAE (from scratch): the same VAE on transformation sequences (x, x_t, x_t+1), "
        f"K = {regularized.regularizer.num_potentials} potentials (one per factor), T = "
        f"{regularized.regularizer.num_steps}, {regularized.regularizer.equation} equation, lambda_pde = "
        f"{regularized.regularizer.pde_weight:g}; loss = ELBO(x) + shifted ELBO + lambda_pde flow loss + "
        "sequence matching (official `trainer_vae_scratch_dsprites.py`). The plain VAE sees single images only.",
        f"- Traversals on the frozen plain VAE of the same seed: K = {potential.traversal.num_potentials}, T = "
        f"{potential.traversal.num_steps}, starts at posterior means of data images, LeNet pair classifier "
        f"with stochastic logits and random reflection, Adam {potential.optim.learning_rate:g}; the linear "
        "baseline trains the same classifier on unit-speed straight walks (classifier loss only).",
        f"- Metrics (`jaxrep.metrics.disentanglement`, `jaxrep.nn.vae`): MIG (20 bins) and DCI (gradient-boosted "
        f"trees, {plain.eval.dci_trees} stages, 80/20 split) on posterior means of {plain.eval.num_images} grid "
        f"images against their 5 factor classes; NLL = importance-weighted -log p(x) in nats with "
        f"{plain.eval.nll_samples} samples on {plain.eval.nll_images} grid images (training images: the grid is "
        "the whole dataset); VP = held-out accuracy of a logistic regression predicting k from x_T - x_0 "
        f"(trained on 10 % of {potential.eval.vp_pairs} pairs per traversal, 3 folds; chance = "
        f"{1 / potential.traversal.num_potentials:.2f}). latent change = mean ||z_T - z_0||; image change = "
        "mean |x_T - x_0| per pixel (images in [0, 1]).",
        "",
        "## From scratch: plain VAE vs potential-flow regularised VAE (mean ± std over seeds)",
        "",
        "| VAE | MIG | DCI disentanglement | DCI completeness | DCI informativeness | NLL (nats) | VP |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, results in vae_results.items():
        cells = [fmt([r[m] for r in results], 1 if m == "nll" else 3) if all(m in r for r in results) else "n/a"
                 for m in VAE_METRICS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "Per seed (plain / regularised):", "",
              "| seed | MIG | DCI D | DCI C | DCI I | NLL |", "|---|---|---|---|---|---|"]
    for i, seed in enumerate(seeds):
        p, r = vae_results["plain"][i], vae_results["regularized"][i]
        cells = [f"{p[m]:.{1 if m == 'nll' else 3}f} / {r[m]:.{1 if m == 'nll' else 3}f}" for m in VAE_METRICS[:5]]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    lines += ["", "## Frozen generator: potentials vs linear directions (mean ± std over seeds)", "",
              "| traversals | VP | latent change | image change | train classifier accuracy |", "|---|---|---|---|---|"]
    for family, results in traversal_results.items():
        lines.append(f"| {family} | " + " | ".join(fmt([r[m] for r in results]) for m in TRAVERSAL_METRICS) + " |")
    lines += ["", "Per seed VP (potential / linear / linear, matched): " + "; ".join(
        f"seed {seed}: {traversal_results['potential'][i]['vp']:.3f} / {traversal_results['linear'][i]['vp']:.3f} / "
        f"{traversal_results['linear, matched'][i]['vp']:.3f}" for i, seed in enumerate(seeds)), ""]
    lines += ["## Reading", ""] + reading(vae_results, traversal_results)
    lines += ["", "## Strips (seed 0, first start; one row per potential, one column per flow step)", ""]
    lines += [f"- {caption}: ![{caption}]({picture_name(run_name)})" for run_name, _, caption in PICTURES]
    lines += ["", "Every run keeps its strips in `strips/`, its metrics in `final_metrics.json` and "
              "`metrics.jsonl`.", ""]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {path}")


def reading(vae_results: dict, traversal_results: dict) -> list[str]:
    """Paired differences against the seed spread, stated without adjectives the numbers do not support."""
    out = []
    for metric, better in (("mig", "higher"), ("dci_disentanglement", "higher"), ("nll", "lower")):
        plain = np.array([r[metric] for r in vae_results["plain"]])
        regularized = np.array([r[metric] for r in vae_results["regularized"]])
        difference = regularized - plain
        wins = int(np.sum(difference > 0 if better == "higher" else difference < 0))
        spread = np.hypot(plain.std(), regularized.std())
        verdict = "within" if abs(difference.mean()) <= spread else "outside"
        out.append(f"- {metric}: regularised - plain = {difference.mean():+.3f} (seed spread {spread:.3f}, "
                   f"{verdict} it); the regularised VAE is better ({better}) on {wins}/{len(plain)} seeds.")
    for other in ("linear", "linear, matched"):
        potential = np.array([r["vp"] for r in traversal_results["potential"]])
        baseline = np.array([r["vp"] for r in traversal_results[other]])
        difference = potential - baseline
        out.append(f"- VP, potentials - {other} = {difference.mean():+.3f} (seed spread "
                   f"{np.hypot(potential.std(), baseline.std()):.3f}); potentials higher on "
                   f"{int(np.sum(difference > 0))}/{len(potential)} seeds.")
    return out


if __name__ == "__main__":
    app.run(main)

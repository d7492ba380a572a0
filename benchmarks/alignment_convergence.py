"""Convergence of vanilla SiT vs REPA vs iREPA vs ERW on a CPU setting; writes a markdown report + PNGs.

  python -m benchmarks.alignment_convergence                         # coloured shapes: docs/results/alignment.md
  python -m benchmarks.alignment_convergence --steps=600 --eval_every=200 --num_samples=500
  python -m benchmarks.alignment_convergence --base=fmnist --controls=repa_random   # alignment_fmnist.md

`--base=fmnist` runs the `fmnist*` presets (Fashion-MNIST, the class-supervised in-repo encoder trained on its
60,000 training images) and adds, per run, the linear-probe accuracy of block 2's tokens (mean-pooled, at
t = 0.25 with the null label, fitted on 5,000 training images, scored on 5,000 test images), the steps each
method needs to reach the reference FD (vanilla's mean final FD; bootstrap CIs over seeds; the verdict names the
aligned methods whose CI lies wholly below vanilla's) and the alignment
diagnostics against steps: those logged during training (aligned methods, against their own targets) and those of
every checkpoint against the trained encoder's tokens (`jaxrep.experiments.checkpoint_diagnostics`, all methods, vanilla
included). `--controls=repa_random,repa_hog` adds REPA against a randomly initialised encoder of the same
architecture and against HOG cells, on seed 0 (iREPA's spatial-structure controls).

Every method trains `configs/diffusion.py:cpu` / `cpu_{repa,irepa,erw}` with the same seeds, step budget,
batch and optimizer (`jaxrep.experiments.diffusion.train_and_evaluate`, in `--runs_dir/<method>/seed<k>`; runs
resume from their checkpoints, so an interrupted study continues where it stopped). ERW's warmup steps count in
the budget (its global step includes them, as the ERW paper's compute comparison does), and its warmup and half-life are
set to 1/6 of the budget like the preset. Every `--eval_every` steps the checkpoint is evaluated with
`train.evaluate`'s pieces and its `cpu` preset settings: its EMA weights draw `--num_samples` class-balanced
samples with the run's sampler (Heun ODE, CFG; `--sample_steps` overrides the step count), and FD (plus
precision/recall) against the whole dataset is computed in the features of the in-repo evaluation network (a
ResNet trained on the labels or factors, unlike the ViT alignment encoder). Lower FD is better; FD at a few
hundred samples carries a positive bias, the same for every method since N is fixed.

Wall-clock per step is measured separately per method on one fixed batch: the compiled train step plus, for
aligned methods, the encoder forward that produces the targets (`prepare_batch`), after a warm-up call.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from configs import diffusion as diffusion_configs
from configs import evaluate as evaluate_configs
from jaxrep import parallel
from jaxrep.data import FashionMNIST, make_iterator
from jaxrep.data.fashion_mnist import DEBIAN_DIR as FASHION_MNIST_DIR
from jaxrep.diffusion import linear_interpolant
from jaxrep.experiments import diffusion as diffusion_experiment
from jaxrep.experiments import evaluate as evaluate_experiment
from jaxrep.experiments import sample as sample_experiment
from jaxrep.experiments.checkpoint_diagnostics import checkpoint_diagnostics
from jaxrep.experiments.run_config import load_run_config, sampling_config
from jaxrep.metrics import bootstrap_mean_ci, linear_probe_accuracy
from jaxrep.metrics.convergence import faster_than_baseline, steps_to_reference
from jaxrep.run.active_clock import ActiveClock
from jaxrep.run.checkpoint import Checkpointer
from jaxrep.run.logging import read_metrics

_METHODS = flags.DEFINE_list("methods", ["none", "repa", "irepa", "erw"], "Methods ('none' = vanilla SiT).")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds per method (0 .. seeds-1).")
_STEPS = flags.DEFINE_integer("steps", 0, "Training steps per run; 0: the cpu preset's total_steps.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 0, "Steps between FD evaluations; 0: steps // 4.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 500, "Generated images per FD evaluation.")
_SAMPLE_STEPS = flags.DEFINE_integer("sample_steps", 0, "ODE steps of the sampler; 0: the preset's.")
_TIMING_STEPS = flags.DEFINE_integer("timing_steps", 30, "Steps timed per method for the wall-clock column.")
_RUNS_DIR = flags.DEFINE_string("runs_dir", "/tmp/alignment_study", "Root of the runs' work directories.")
_OUTPUT = flags.DEFINE_string("output", "", "Markdown report (PNGs next to it); empty: "
                               "docs/results/alignment.md (cpu) or docs/results/alignment_fmnist.md (fmnist).")
_BASE = flags.DEFINE_enum("base", "cpu", ["cpu", "fmnist"], "Preset base: coloured shapes or Fashion-MNIST.")
_CONTROLS = flags.DEFINE_list("controls", [], "Controls run on seed 0 only: repa_random (random-weight encoder), "
                              "repa_hog (HOG targets).")

NAMES = {"none": "vanilla SiT", "repa": "REPA", "irepa": "iREPA", "erw": "ERW", "repa_random": "REPA, random encoder",
         "repa_hog": "REPA, HOG targets"}
CONTROL_SOURCES = {"repa_random": "random", "repa_hog": "hog"}  # align.encoder.source of each control
PROBE_DEPTH, PROBE_TIME, PROBE_IMAGES = 2, 0.25, 5000  # block 2 = the cpu presets' align.depth
DATASETS = {
    "cpu": {"title": "the CPU setting (coloured shapes 32x32)",
            "data": "the coloured shapes (32x32x3, label = shape)",
            "encoder": "in-repo ViT encoder (`train/encoder.py`, trained on the same 1,350 images' factors)",
            "reference": "all 1350 dataset images",
            "eval_net": "the in-repo evaluation ResNet (trained on the factors)"},
    "fmnist": {"title": "Fashion-MNIST (32x32)", "data": "Fashion-MNIST's 60,000 training images (28x28 padded "
               "to 32x32x1, 10 classes)", "encoder": "in-repo ViT encoder (`configs/encoder.py:fashion_mnist`, "
               "class-supervised on the 60,000 images, 1875 steps of 128, about 2.5x the generator's images)",
               "reference": "the training images (`train.evaluate`'s reference selection)",
               "eval_net": "a separately trained Fashion-MNIST classifier ResNet (`configs/eval_net.py:"
               "fashion_mnist`, seed 1; never the target encoder)"},
}
DIAGNOSTICS = ("align_cka", "align_mutual_knn", "align_lds_hidden", "align_effective_rank")


def output_path() -> str:
    return _OUTPUT.value or ("docs/results/alignment.md" if _BASE.value == "cpu" else
                             "docs/results/alignment_fmnist.md")


def run_config(method: str, seed: int, steps: int, eval_every: int):
    base = _BASE.value
    aligned = method.split("_")[0]
    config = diffusion_configs.get_config(base if method == "none" else f"{base}_{aligned}")
    if method in CONTROL_SOURCES:
        config.align.encoder.source = CONTROL_SOURCES[method]
    config.seed = seed
    config.total_steps = steps
    config.checkpoint_every = eval_every
    config.keep_checkpoints = steps // eval_every + 1
    config.log_every = min(config.log_every, eval_every)
    config.align.erw.warmup_steps = steps // 6
    config.align.erw.half_life = steps // 6
    if _SAMPLE_STEPS.value:
        config.sample.num_steps = _SAMPLE_STEPS.value
    return config


def evaluate_checkpoints(workdir: str, eval_every: int) -> dict[int, dict]:
    """FD, precision, recall, density, coverage of the run's main-stage checkpoints at multiples of `eval_every`
    (not those a preempted piece saved in between), with `jaxrep.experiments.evaluate`'s functions (preset `cpu`
    settings; the same numbers as `train.evaluate` per checkpoint), but one experiment and one compiled sampler
    for all checkpoints of the run."""
    eval_config = evaluate_configs.get_config("cpu")
    eval_config.num_samples = _NUM_SAMPLES.value
    if _SAMPLE_STEPS.value:
        eval_config.sample.num_steps = _SAMPLE_STEPS.value
    run_config = load_run_config(workdir)
    config = sampling_config(run_config, eval_config)
    experiment = diffusion_experiment.build_experiment(config)
    sampler = sample_experiment.make_sharded_sampler(experiment)
    extractor = evaluate_experiment.feature_extractor_for(eval_config, run_config)
    real, _ = evaluate_experiment.reference_set(eval_config, config, experiment, extractor, show_progress=False)
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), save_every=1)
    steps = [step for step in checkpointer.all_steps() if step % eval_every == 0]
    checkpointer.close()
    results = {}
    for step in steps:
        params, _ = sample_experiment.restore_params(experiment, workdir, step, use_ema=True)
        images, _, _ = sample_experiment.generate_samples(
            sampler, params, num_samples=eval_config.num_samples, batch_size=eval_config.batch_size,
            num_classes=config.data.num_classes, key=jax.random.key(eval_config.seed), mesh=experiment.mesh,
            show_progress=False)
        fake = evaluate_experiment.sample_features(images, extractor, eval_config, experiment.mesh)
        results[step] = evaluate_experiment.scores(real, fake, eval_config)
    return results


def block_probe(workdir: str) -> float:
    """Linear-probe accuracy of block PROBE_DEPTH's mean token under the run's last EMA weights: x_t at
    t = PROBE_TIME (fixed noise) with the null label (the label would leak the class), probe fitted on the first
    PROBE_IMAGES Fashion-MNIST training images and scored on the first PROBE_IMAGES test images."""
    config = load_run_config(workdir)
    experiment = diffusion_experiment.build_experiment(config)
    params, _ = sample_experiment.restore_params(experiment, workdir, -1, use_ema=True)

    @jax.jit
    def features(images, key):
        t = jnp.full((images.shape[0],), PROBE_TIME)
        x_t, _ = linear_interpolant(images, jax.random.normal(key, images.shape), t)
        null = jnp.full((images.shape[0],), config.data.num_classes, jnp.int32)
        _, hidden = experiment.model.apply({"params": params["sit"]}, x_t, t, null, hidden_at=PROBE_DEPTH)
        return hidden.mean(axis=1)

    arrays = []
    for split in ("train", "test"):
        images, labels = FashionMNIST(config.data.path or FASHION_MNIST_DIR, split).first(PROBE_IMAGES)
        feats = np.concatenate([np.asarray(features(jnp.asarray(images[i:i + 500]), jax.random.key(i)))
                                for i in range(0, PROBE_IMAGES, 500)])
        arrays.append((feats, labels))
    return linear_probe_accuracy(*arrays[0], *arrays[1])


def colour(method: str) -> str:
    """One matplotlib colour per method, the same in every figure whichever methods a panel has."""
    return f"C{list(NAMES).index(method)}"


def logged_diagnostics(record: dict) -> dict[str, tuple[list, list]]:
    """{metric: (steps, values)} of the alignment diagnostics the run logged while training (none for vanilla)."""
    workdir = record["workdir"]
    records = read_metrics(workdir) if os.path.exists(os.path.join(workdir, "metrics.jsonl")) else []
    curves = {}
    for name in DIAGNOSTICS:
        points = sorted({r["step"]: r[name] for r in records if name in r}.items())
        curves[name] = ([s for s, _ in points], [v for _, v in points])
    return curves


def saved_diagnostics(record: dict, checkpoints: list[int]) -> dict[str, tuple[list, list]]:
    """{metric: (steps, values)} of the run's evaluation checkpoints against the trained encoder (every method;
    a checkpoint a preempted piece saved between evaluations is left out, so the seeds' steps line up)."""
    points = sorted((int(step), values) for step, values in record["checkpoint_diagnostics"].items()
                    if int(step) in checkpoints)
    return {name: ([s for s, _ in points], [v[name] for _, v in points]) for name in DIAGNOSTICS}


def plot_diagnostics(path: str, records: dict[str, list[dict]], checkpoints: list[int]) -> None:
    """One panel per diagnostic, the mean over a method's seeds against steps: top, as logged during training
    (aligned methods, against their own targets); bottom, at the checkpoints against the trained encoder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (("logged in training, own targets", logged_diagnostics),
            ("checkpoints vs trained encoder", lambda record: saved_diagnostics(record, checkpoints)))
    fig, axes = plt.subplots(len(rows), len(DIAGNOSTICS), figsize=(4 * len(DIAGNOSTICS), 3.2 * len(rows)), dpi=110)
    for row, (title, curves_of) in zip(axes, rows):
        for method, runs in records.items():
            per_run = [curves_of(r) for r in runs]
            for ax, name in zip(row, DIAGNOSTICS):
                length = min(len(c[name][0]) for c in per_run)
                if not length:
                    continue
                values = np.array([c[name][1][:length] for c in per_run])
                ax.plot(per_run[0][name][0][:length], values.mean(0), marker=".", color=colour(method),
                        label=f"{NAMES[method]} (n={len(per_run)})")
        for ax, name in zip(row, DIAGNOSTICS):
            ax.set_title(f"{name.removeprefix('align_')}: {title}", fontsize=9)
            ax.set_xlabel("training step")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def time_per_step(method: str, steps: int) -> dict[str, float]:
    """Seconds per training step (encoder targets included) of each stage of `method`, on one fixed batch."""
    config = run_config(method, 0, 600, 100)
    stages = ["erw_warmup", "main"] if method == "erw" else ["main"]
    timings = {}
    for stage in stages:
        experiment = diffusion_experiment.build_experiment(config, stage=stage)
        dataset = diffusion_experiment.training_dataset(experiment)
        raw = parallel.global_batch(next(make_iterator(dataset)), experiment.mesh)
        compiled = experiment.jitted_step.lower(experiment.state, experiment.prepare_batch(raw)).compile()
        state, metrics = compiled(experiment.state, experiment.prepare_batch(raw))
        jax.block_until_ready(metrics)
        start = time.perf_counter()
        for _ in range(steps):
            state, metrics = compiled(state, experiment.prepare_batch(raw))
        jax.block_until_ready(metrics)
        timings[stage] = (time.perf_counter() - start) / steps
    return timings


def plot(path: str, steps: list[int], curves: dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for method, values in curves.items():  # values: (seeds, len(steps)), NaN where undefined
        mean, std = np.nanmean(values, 0), np.nanstd(values, 0)
        defined = ~np.isnan(mean)
        xs = np.asarray(steps)[defined]
        ax.plot(xs, mean[defined], marker="o", color=colour(method), label=f"{NAMES[method]} (n={len(values)})")
        ax.fill_between(xs, (mean - std)[defined], (mean + std)[defined], color=colour(method), alpha=0.2)
    ax.set_xlabel("training step (ERW: warmup included)")
    ax.set_ylabel("FD (eval-net features), lower is better")
    ax.set_title(f"Convergence on {DATASETS[_BASE.value]['title']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def cell(values: np.ndarray) -> str:
    values = values[~np.isnan(values)]
    if not len(values):
        return "-"
    return f"{values.mean():.1f} ± {values.std():.1f}"


def latest_step(workdir: str) -> int | None:
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), save_every=1)
    try:
        return checkpointer.latest_step()
    finally:
        checkpointer.close()


def tally(record: dict, key: str, seconds: float, fresh: bool) -> None:
    """Adds one piece's wall-clock to `record[key]`; a fresh start opens the tally, and a tally that missed a
    piece (None: the run began before pieces were timed) stays None."""
    if fresh:
        record[key] = seconds
    elif record.get(key) is not None:
        record[key] += seconds


def save_record(path: str, record: dict) -> None:
    with open(path, "w") as f:
        json.dump(record, f, indent=2)


def run(method: str, seed: int, steps: int, eval_every: int) -> dict:
    """Trains (or resumes) one run and evaluates its checkpoints; the record is kept in `<run>/study.json`, so a
    restarted study neither retrains nor re-evaluates finished runs. `train_seconds` and `eval_seconds` sum the
    wall-clock of every piece (compile and checkpoints included; time the process was stopped left out), kept
    across preemptions."""
    workdir = os.path.join(_RUNS_DIR.value, _BASE.value, method, f"seed{seed}")
    path = os.path.join(workdir, "study.json")
    settings = {"num_samples": _NUM_SAMPLES.value, "sample_steps": _SAMPLE_STEPS.value}
    record = json.load(open(path)) if os.path.exists(path) else {"train_seconds": None}
    record["workdir"] = workdir
    latest = latest_step(workdir)
    if latest != steps:
        with ActiveClock() as clock:
            diffusion_experiment.train_and_evaluate(run_config(method, seed, steps, eval_every), workdir)
        tally(record, "train_seconds", clock.seconds, fresh=latest is None)
        record.pop("results", None)
        save_record(path, record)
        if latest_step(workdir) != steps:  # SIGTERM: the run saved its step; nothing half-done is evaluated
            print(f"preempted: {workdir} at step {latest_step(workdir)}; rerun the same command to resume")
            raise SystemExit(0)
    with ActiveClock() as clock:
        reevaluate = record.get("settings") != settings or "results" not in record
        evaluated = reevaluate
        if reevaluate:
            results = evaluate_checkpoints(workdir, eval_every)
            keys = ("fd", "precision", "recall", "density", "coverage")
            record["results"] = {str(step): {k: float(r[k]) for k in keys} for step, r in results.items()}
            record["settings"] = settings
            record.pop("probe_accuracy", None)
        if _BASE.value == "fmnist" and "probe_accuracy" not in record:
            evaluated = True
            record["probe_accuracy"] = block_probe(workdir)
        if _BASE.value == "fmnist" and "checkpoint_diagnostics" not in record:
            evaluated = True
            diagnostics = checkpoint_diagnostics(workdir, run_config("repa", seed, steps, eval_every))
            record["checkpoint_diagnostics"] = {str(step): values for step, values in diagnostics.items()}
    if evaluated:
        tally(record, "eval_seconds", clock.seconds, fresh=reevaluate)
    save_record(path, record)
    return record


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    base = diffusion_configs.get_config(_BASE.value)
    steps = _STEPS.value or base.total_steps
    eval_every = _EVAL_EVERY.value or steps // (4 if _BASE.value == "cpu" else 6)
    if steps % eval_every:
        raise app.UsageError(f"--steps {steps} is not a multiple of --eval_every {eval_every}")
    checkpoints = list(range(eval_every, steps + 1, eval_every))
    curves, train_seconds, final, records = {}, {}, {}, {}
    runs = [(method, range(_SEEDS.value)) for method in _METHODS.value] + [(c, range(1)) for c in _CONTROLS.value]
    # Seed-major order, so a study stopped part-way has every method at the seeds it has done.
    done = {(method, seed): run(method, seed, steps, eval_every)
            for seed in range(_SEEDS.value) for method, seeds in runs if seed in seeds}
    for method, seeds in runs:
        rows, seconds, finals, records[method] = [], [], [], []
        for seed in seeds:
            record = done[(method, seed)]
            results = record["results"]
            rows.append([results[str(step)]["fd"] if str(step) in results else np.nan for step in checkpoints])
            finals.append(results[str(steps)])
            seconds.append((record.get("train_seconds"), record.get("eval_seconds")))
            records[method].append(record)
            print(f"{method} seed {seed}: FD " + ", ".join(f"{s}: {v:.2f}" for s, v in zip(checkpoints, rows[-1])),
                  flush=True)
        curves[method], train_seconds[method], final[method] = np.array(rows), seconds, finals
    timings_path = os.path.join(_RUNS_DIR.value, _BASE.value, "timings.json")
    timings = json.load(open(timings_path)) if os.path.exists(timings_path) else {}
    for method, _ in runs:
        if method not in timings:
            timings[method] = time_per_step(method, _TIMING_STEPS.value)
            with open(timings_path, "w") as f:
                json.dump(timings, f, indent=2)

    output_dir = os.path.dirname(output_path()) or "."
    os.makedirs(output_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(output_path()))[0]
    png = os.path.join(output_dir, f"{stem}_fd.png")
    plot(png, checkpoints, curves)
    write_report(steps, eval_every, checkpoints, curves, timings, train_seconds, final, base, png)
    if _BASE.value == "fmnist":
        diagnostics_png = os.path.join(output_dir, f"{stem}_diagnostics.png")
        plot_diagnostics(diagnostics_png, records, checkpoints)
        append_fmnist_sections(checkpoints, curves, records, diagnostics_png)
    print(open(output_path()).read())


def append_fmnist_sections(checkpoints, curves, records, diagnostics_png) -> None:
    """Probe accuracy, steps to the reference FD with bootstrap CIs, the verdict, and the diagnostics figure."""
    reference = float(np.nanmean(curves["none"][:, -1]))
    budget = checkpoints[-1]
    lines = ["", f"Steps to reach the reference FD {reference:.2f} (vanilla's mean FD at step {budget}; linear "
             f"interpolation between evaluations; a seed that does not reach it is counted at the budget, {budget}, "
             "a lower bound, and marked >), and the linear-probe "
             f"accuracy of block {PROBE_DEPTH}'s mean token (t = {PROBE_TIME}, null label; {PROBE_IMAGES} train / "
             f"{PROBE_IMAGES} test images). Mean [95 % percentile-bootstrap CI over seeds]:", "",
             "| method | seeds | steps to reference FD | per seed | probe accuracy |", "|---|---|---|---|---|"]
    pairs = {method: steps_to_reference(checkpoints, values, reference) for method, values in curves.items()}
    steps = {method: values for method, (values, _) in pairs.items()}
    censored = {method: unreached for method, (_, unreached) in pairs.items()}
    for method, values in steps.items():
        mean, low, high = bootstrap_mean_ci(values)
        probes = [r["probe_accuracy"] for r in records[method]]
        p_mean, p_low, p_high = bootstrap_mean_ci(probes)
        per_seed = ", ".join(f">{v:.0f}" if unreached else f"{v:.0f}" for v, unreached in zip(values, censored[method]))
        lines.append(f"| {NAMES[method]} | {len(values)} | {mean:.0f} [{low:.0f}, {high:.0f}] | {per_seed} | "
                     f"{p_mean:.3f} [{p_low:.3f}, {p_high:.3f}] |")
    faster = faster_than_baseline(steps, censored, baseline="none")
    vanilla = float(np.mean(steps["none"]))
    verdict = ("Verdict: " + "; ".join(
        f"{NAMES[m]} reaches it in {vanilla / x:.0f} steps against vanilla's {vanilla:.0f}, a {x:.2f}x speed-up, "
        "its CI wholly below vanilla's" for m, x in faster.items()) + "." if faster else
        "Verdict: no aligned method (3 seeds or more, every seed reaching the reference) has its CI wholly below "
        "vanilla's, so no speed-up is shown at this number of seeds.")
    lines += ["", verdict]
    lines += ["", f"![alignment diagnostics against steps]({os.path.basename(diagnostics_png)})", "",
              "Diagnostics (`jaxrep.align.diagnostics` on a fixed probe batch): linear CKA and mutual k-NN "
              "between block 2's tokens and the encoder's, the local-distant similarity of block 2's tokens, and "
              "their effective rank. Top row: logged every `align.diagnostics_every` steps during training, "
              "against each run's own targets (vanilla SiT has no encoder in its run and logs none). Bottom row: "
              "every checkpoint's raw weights against the trained encoder's tokens, the same probe for every "
              "method (`jaxrep.experiments.checkpoint_diagnostics`)."]
    with open(output_path(), "a") as f:
        f.write("\n".join(lines) + "\n")


def seconds_cell(train: float | None, evaluation: float | None) -> str:
    return " + ".join("-" if value is None else f"{value:.0f}" for value in (train, evaluation))


def cost_sentence(seconds: dict[str, list[tuple]], timings: dict, steps: int) -> str:
    """The study's total wall-clock: what was timed, plus an estimate (steps x the timed step) for training
    pieces that were not (runs begun before the study timed every piece)."""
    timed = sum(value for runs in seconds.values() for run in runs for value in run if value is not None)
    untimed = [(method, index) for method, runs in seconds.items() for index, (train, _) in enumerate(runs)
               if train is None]
    estimate = sum(steps * timings[method]["main"] for method, _ in untimed)
    untimed_eval = sum(evaluation is None for runs in seconds.values() for _, evaluation in runs)
    return (f"Total cost: {timed / 3600:.1f} h of wall-clock timed over {sum(map(len, seconds.values()))} runs "
            "(training and evaluation, on this shared machine; time the study was paused is left out), plus"
            f" about {estimate / 3600:.1f} h of training "
            f"for the {len(untimed)} runs with an untimed piece (their steps x the step time above) and "
            f"{untimed_eval} untimed evaluations.")


def write_report(steps, eval_every, checkpoints, curves, timings, train_seconds, final, base, png) -> None:
    vanilla_step = timings.get("none", {}).get("main")
    name = _BASE.value
    data = DATASETS[name]
    lines = [
        f"# Representation alignment on {data['title']}: vanilla SiT vs REPA vs iREPA vs ERW",
        "",
        f"Generated by `python -m benchmarks.alignment_convergence --base={name} --steps={steps} "
        f"--eval_every={eval_every} --seeds={_SEEDS.value} --num_samples={_NUM_SAMPLES.value}"
        + (f" --controls={','.join(_CONTROLS.value)}" if _CONTROLS.value else "")
        + (f" --sample_steps={_SAMPLE_STEPS.value}" if _SAMPLE_STEPS.value else "") + "` on "
        f"{datetime.date.today().isoformat()} ({platform.machine()}, {os.cpu_count()} CPU cores, shared with other "
        f"jobs; JAX {jax.__version__}, backend {jax.default_backend()}).",
        "",
        f"Setting: `configs/diffusion.py:{name}` (SiT patch {base.model.patch_size}, width "
        f"{base.model.hidden_size}, {base.model.depth} blocks, batch {base.batch_size}, AdamW "
        f"{base.optim.learning_rate:g}, {base.diffusion.time_weighting} t) on {data['data']}, and the "
        f"`{name}_{{repa,irepa,erw}}` presets: {data['encoder']} (64-d tokens on the 8x8 SiT grid), "
        "alignment after block 2 of 4 (REPA: MLP projector, lambda 0.5; iREPA: 3x3 conv projector, spatially "
        f"z-scored targets, lambda 1.0; ERW: {steps // 6} warmup steps of block 1 on clean inputs, then lambda = "
        f"2^(-(s - {steps // 6}) / {steps // 6}) at block 2). Same seeds (0..{_SEEDS.value - 1}), step budget "
        f"({steps}, ERW's warmup included), data order and initialisation for every method. FD: "
        f"{_NUM_SAMPLES.value} class-balanced EMA samples (Heun ODE, "
        f"{_SAMPLE_STEPS.value or base.sample.num_steps} steps, CFG {base.sample.cfg_scale}) against "
        f"{data['reference']}, in the 128-d features of {data['eval_net']} "
        "(`train.evaluate`, preset `cpu`). Mean ± std over seeds; lower is better. ERW has no FD before its "
        "warmup ends (the warmup model has no generator yet).",
        "",
        f"![FD against training steps]({os.path.basename(png)})",
        "",
        "| method | " + " | ".join(f"FD @ {s}" for s in checkpoints) + " | train step (ms) | vs vanilla |",
        "|---|" + "---|" * (len(checkpoints) + 2),
    ]
    for method, values in curves.items():
        timing = timings[method]
        step_ms = " / ".join(f"{1e3 * timing[s]:.0f}" for s in ("erw_warmup", "main") if s in timing)
        if "erw_warmup" in timing:
            step_ms = f"{step_ms} (warmup / main)"
        ratio = f"{timing['main'] / vanilla_step:.2f}x" if vanilla_step else "-"
        lines.append(f"| {NAMES[method]} | " + " | ".join(cell(values[:, i]) for i in range(len(checkpoints)))
                     + f" | {step_ms} | {ratio} |")
    lines += ["", f"At step {steps}, per seed (FD / precision / recall, k = 5):", "",
              "| method | " + " | ".join(f"seed {s}" for s in range(_SEEDS.value))
              + " | recall (mean) | wall-clock per run, train + evaluation (s; - : a piece was not timed) |",
              "|---|" + "---|" * (_SEEDS.value + 2)]
    for method, results in final.items():
        per_seed = [f"{r['fd']:.1f} / {r['precision']:.2f} / {r['recall']:.2f}" for r in results]
        per_seed += ["-"] * (_SEEDS.value - len(per_seed))  # the controls run one seed
        recall = np.mean([r["recall"] for r in results])
        lines.append(f"| {NAMES[method]} | " + " | ".join(per_seed) + f" | {recall:.2f} | "
                     + ", ".join(seconds_cell(train, evaluation) for train, evaluation in train_seconds[method])
                     + " |")
    lines += ["", cost_sentence(train_seconds, timings, steps)]
    lines += ["", "Train step times: the compiled step on one fixed batch plus, for aligned methods, the jitted "
              "encoder forward that makes the targets, averaged over "
              f"{_TIMING_STEPS.value} steps after a warm-up step, on this shared machine (noisy)."]
    with open(output_path(), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    app.run(main)

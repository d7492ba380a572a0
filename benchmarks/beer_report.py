"""Report of a `train.rl_grid` study (BEER vs DDPG): rliable aggregates, per-task curves; writes beer.md + PNGs.

  python -m train.rl_grid --config=configs/rl_grid.py:study --workdir=/work/beer_study   # resumable, in pieces
  python -m benchmarks.beer_report --grid=/work/beer_study
  python -m benchmarks.beer_report --grid=/work/beer_study,/work/beer_study_host   # several grids, one report

Reads `<grid>/results.json` and `<grid>/config.json` of each grid (a task is taken from the first grid that has
it). Scores are each run's final evaluation return / 1000
(`jaxrep.rl.statistics`); IQM and mean use rliable's stratified bootstrap over runs within each task, the
probability of improvement averages the per-task Mann-Whitney statistic, and the learning curves carry
percentile-bootstrap bands over seeds. A partial grid is reported with the cells it has and says so.
"""

from __future__ import annotations

import datetime
import json
import os
import platform

import numpy as np
from absl import app, flags

from jaxrep.rl import statistics

_GRID = flags.DEFINE_list("grid", ["/work/beer_study"], "Work directories of train.rl_grid runs, comma-separated.")
_OUTPUT = flags.DEFINE_string("output", "docs/results/beer.md", "Markdown report; PNGs go next to it.")
_REPS = flags.DEFINE_integer("reps", 20_000, "Bootstrap resamples of the aggregate intervals.")


def load(grids: list[str]) -> tuple[dict[str, dict], list[dict]]:
    """({grid: its config}, every run's row with its "grid"); a task already in an earlier grid is skipped."""
    configs, rows = {}, []
    for grid in grids:
        with open(os.path.join(grid, "results.json")) as f:
            grid_rows = json.load(f)
        path = os.path.join(grid, "config.json")
        configs[grid] = json.load(open(path)) if os.path.exists(path) else {}
        seen = {r["task"] for r in rows}
        rows += [dict(r, grid=grid) for r in grid_rows if r["task"] not in seen]
    return configs, rows


def complete_tasks(rows: list[dict], methods: list[str]) -> list[str]:
    """Tasks every method has the same number (> 0) of finished seeds on: rliable needs (runs, tasks) arrays."""
    tasks = []
    for task in dict.fromkeys(r["task"] for r in rows):
        counts = {m: sum(1 for r in rows if r["task"] == task and r["method"] == m) for m in methods}
        if min(counts.values()) > 0 and len(set(counts.values())) == 1:
            tasks.append(task)
    return tasks


def unfinished_tasks(configs: dict[str, dict], tasks: list[str]) -> list[str]:
    """The grids' configured tasks (their `tasks` fields) that the report does not cover."""
    configured = [t.strip() for config in configs.values() for t in config.get("tasks", "").split(",") if t.strip()]
    return [t for t in dict.fromkeys(configured) if t not in tasks]


def main(argv) -> None:
    del argv
    configs, rows = load(_GRID.value)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    tasks = complete_tasks(rows, methods)
    if not tasks:
        raise app.UsageError(f"no task in {_GRID.value} has finished runs of every method yet")
    per = {(t, m): [r for r in rows if r["task"] == t and r["method"] == m] for t in tasks for m in methods}
    finals = {m: np.array([[r["evals"][-1][1] for r in per[(t, m)]] for t in tasks]).T for m in methods}
    scores = statistics.normalize_returns(finals)
    intervals = statistics.aggregate_intervals(scores, reps=_REPS.value)
    output_dir = os.path.dirname(_OUTPUT.value) or "."
    stem = os.path.splitext(os.path.basename(_OUTPUT.value))[0]
    png = {name: os.path.join(output_dir, f"{stem}_{name}.png") for name in ("aggregates", "profiles", "curves")}
    statistics.plot_aggregates(png["aggregates"], intervals)
    taus = np.linspace(0, 1, 41)
    profiles, cis = statistics.performance_profiles(scores, taus)
    statistics.plot_profiles(png["profiles"], taus, profiles, cis)
    steps = {t: [s for s, _ in per[(t, methods[0])][0]["evals"]] for t in tasks}
    curves = {t: {m: np.array([[v for _, v in r["evals"]] for r in per[(t, m)]]) for m in methods} for t in tasks}
    statistics.plot_learning_curves(png["curves"], steps, curves)
    improvement = (statistics.probability_of_improvement(scores, "beer", "ddpg")
                   if {"beer", "ddpg"} <= set(methods) else None)
    # A vmapped MJX cell reports its wall-clock once per seed row: count each run once.
    seconds = list({(r["task"], r["method"], r["loop"], r["run_seconds"]) for r in rows if r.get("run_seconds")})
    write(configs, tasks, methods, per, intervals, improvement, png, [s[-1] for s in seconds])
    print(open(_OUTPUT.value).read())


def verdict(intervals, improvement) -> str:
    """What the intervals do and do not show, in words."""
    beer, ddpg = intervals["beer"]["iqm"], intervals["ddpg"]["iqm"]
    if beer[1] > ddpg[2] or ddpg[1] > beer[2]:
        better = "BEER" if beer[0] > ddpg[0] else "DDPG"
        text = (f"The IQM intervals do not overlap: at this budget {better} scores higher across these tasks, "
                "beyond what resampling the seeds explains.")
    else:
        text = ("The IQM intervals overlap: at this budget the runs cannot tell BEER from DDPG; any difference in "
                "the point estimates is within the seed-to-seed spread.")
    if improvement is not None:
        text += (f" P(BEER > DDPG) = {improvement[0]:.2f} with interval [{improvement[1]:.2f}, {improvement[2]:.2f}]"
                 + (", which excludes 0.5." if improvement[1] > 0.5 or improvement[2] < 0.5 else ", which contains "
                    "0.5 (no difference)."))
    return text + (" The intervals cover only the uncertainty from the seeds run here (a few per task, where the "
                   "bootstrap is itself rough); they say nothing about other tasks, longer training, or other "
                   "hyperparameters, and nothing about the paper's 1M-step 12-task claim.")


def write(configs, tasks, methods, per, intervals, improvement, png, seconds) -> None:
    seeds = len(per[(tasks[0], methods[0])])
    first = next(iter(configs.values()))
    lines = [
        "# BEER-DDPG vs DDPG: a task x seed grid on this machine",
        "",
        f"Generated by `python -m benchmarks.beer_report --grid={','.join(_GRID.value)}` on {datetime.date.today()} "
        f"from the `train.rl_grid` runs in {', '.join(f'`{g}`' for g in configs)} ({platform.machine()}, "
        f"{os.cpu_count()} CPU cores). Agent: the official BEER settings (256-256 actor and critic, Adam 3e-4, "
        f"batch {first.get('batch_size', 256)}, tau 0.005, beta {first.get('beer_coef', 1e-3):g}), action repeat "
        f"{first.get('action_repeat', '?')}, UTD {first.get('updates_per_step', 1)}. {seeds} seeds per task and "
        f"method (seeds 0..{seeds - 1}; on MJX one vmapped program per task and method, `jaxrep.rl.population`).",
        "",
        "| task | loop | agent steps per run | uniform-random first | evaluated every |",
        "|---|---|---|---|---|",
    ]
    for t in tasks:
        run, config = per[(t, methods[0])][0], configs[per[(t, methods[0])][0]["grid"]]
        lines.append(f"| {t} | {run['loop']} | {run['env_steps']:,} | {config.get('start_steps', 0):,} | "
                     f"{config.get('eval_every', 0):,} |")
    if seconds:
        lines += ["", f"Cost: {sum(seconds) / 3600:.1f} h of wall-clock over the runs that report it."]
    missing = unfinished_tasks(configs, tasks)
    if missing:
        lines += ["", f"**Partial grid:** no finished runs of every method yet for {', '.join(missing)}; the "
                  "aggregates below cover only the tasks listed above."]
    lines += [
        "",
        f"Each run is a few percent of the paper's 1M steps, on {len(tasks)} tasks, not its 12-task protocol (the "
        "paper's task "
        "list could not be established; see `configs/rl.py`). It measures BEER against DDPG at a small budget; it "
        "cannot confirm or refute the paper's 1M-step claim.",
        "",
        "## Final evaluation return per task (mean [95 % bootstrap CI] over seeds)",
        "",
        "| task | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    from jaxrep.metrics.convergence import bootstrap_mean_ci

    for t in tasks:
        cells = []
        for m in methods:
            values = [r["evals"][-1][1] for r in per[(t, m)]]
            mean, low, high = bootstrap_mean_ci(values)
            cells.append(f"{mean:.0f} [{low:.0f}, {high:.0f}] ({', '.join(f'{v:.0f}' for v in values)})")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    lines += ["", "## Aggregates over tasks (normalised score = return / 1000; rliable, stratified bootstrap)", "",
              "| method | IQM [95 % CI] | mean [95 % CI] |", "|---|---|---|"]
    for m in methods:
        iqm, mean = intervals[m]["iqm"], intervals[m]["mean"]
        lines.append(f"| {m} | {iqm[0]:.3f} [{iqm[1]:.3f}, {iqm[2]:.3f}] | {mean[0]:.3f} [{mean[1]:.3f}, "
                     f"{mean[2]:.3f}] |")
    if improvement is not None:
        lines += ["", f"Probability of improvement P(BEER > DDPG) = {improvement[0]:.2f} "
                  f"[{improvement[1]:.2f}, {improvement[2]:.2f}] (0.5: no difference)."]
    if {"beer", "ddpg"} <= set(methods):
        lines += ["", "**What the intervals show.** " + verdict(intervals, improvement)]
    lines += ["", f"![IQM and mean]({os.path.basename(png['aggregates'])})", "",
              f"![performance profiles]({os.path.basename(png['profiles'])})", "",
              f"![learning curves]({os.path.basename(png['curves'])})", ""]
    with open(_OUTPUT.value, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    app.run(main)

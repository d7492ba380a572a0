"""Report of a `train.rl_grid` study (BEER vs DDPG): returns, BEER's mechanism, rliable intervals, curves; writes
the Markdown report and its PNGs.

  python -m benchmarks.beer_report   # docs/results/beer.md from the committed 100k-step mechanism grids
  python -m benchmarks.beer_report --grid=docs/results/beer_grid --output=docs/results/beer_20k.md   # the 20k grid
  python -m train.rl_grid --config=configs/rl_grid.py:mechanism --workdir=/work/beer_study   # resumable, in pieces
  python -m benchmarks.beer_report --grid=/work/beer_study,/work/more_tasks --output=/work/beer.md   # several grids

Reads `<grid>/results.json` and `<grid>/config.json` of each grid (a run (task, method, seed) is taken from the
first grid that has it; `grid_results.load`). Scores are each run's final evaluation return / 1000
(`jaxrep.rl.statistics`); IQM and mean use rliable's stratified bootstrap over runs within each task, the
probability of improvement averages the per-task Mann-Whitney statistic (of the return, and of the final |Q error| for
the mechanism), and the per-task tables and learning curves carry percentile-bootstrap intervals over seeds. A partial grid is reported with the cells it has and says so.
"""

from __future__ import annotations

import os

import numpy as np
from absl import app, flags

from benchmarks.grid_results import comparable_runs, load, unfinished_tasks
from benchmarks.verdicts import compared
from jaxrep.rl import statistics
from jaxrep.run import rl_figures

MECHANISM_GRIDS = ["docs/results/beer_mechanism_grid", "docs/results/beer_mechanism_walker_grid",
                   "docs/results/beer_mechanism_walker_ddpg_grid", "docs/results/beer_mechanism_walker_ddpg_seed4_grid",
                   "docs/results/beer_mechanism_cartpole_grid"]  # the `:mechanism` preset, one grid per process
REPORT = "docs/results/beer.md"


def main(argv) -> None:
    del argv
    grids, output = flags.FLAGS.grid, flags.FLAGS.output
    configs, rows = load(grids)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    tasks, seeds = comparable_runs(rows, methods)
    if not seeds:
        raise app.UsageError(f"no task in {grids} has a seed finished by every method yet")
    per = {(t, m): sorted((r for r in rows if r["task"] == t and r["method"] == m and r["seed"] in seeds),
                          key=lambda r: r["seed"]) for t in tasks for m in methods}
    left_out = len(rows) - sum(len(runs) for runs in per.values())
    finals = {m: np.array([[r["evals"][-1][1] for r in per[(t, m)]] for t in tasks]).T for m in methods}
    scores = statistics.normalize_returns(finals)
    intervals = statistics.aggregate_intervals(scores, reps=flags.FLAGS.reps)
    output_dir = os.path.dirname(output) or "."
    stem = os.path.splitext(os.path.basename(output))[0]
    png = {name: os.path.join(output_dir, f"{stem}_{name}.png") for name in ("aggregates", "profiles", "curves")}
    rl_figures.plot_aggregates(png["aggregates"], intervals)
    taus = np.linspace(0, 1, 41)
    profiles, cis = statistics.performance_profiles(scores, taus)
    rl_figures.plot_profiles(png["profiles"], taus, profiles, cis)
    steps = {t: [s for s, _ in per[(t, methods[0])][0]["evals"]] for t in tasks}
    curves = {t: {m: np.array([[v for _, v in r["evals"]] for r in per[(t, m)]]) for m in methods} for t in tasks}
    rl_figures.plot_learning_curves(png["curves"], steps, curves)
    compare = {"beer", "ddpg"} <= set(methods)
    improvement = statistics.probability_of_improvement(scores, "beer", "ddpg") if compare else None
    # A vmapped MJX cell reports its wall-clock once per seed row: count each run once.
    seconds = list({(r["task"], r["method"], r["loop"], r["run_seconds"]) for r in rows if r.get("run_seconds")})
    q_lower, bound_lower = ((beer_lower(tasks, per, value) if compare and recorded(tasks, methods, per, name) else None)
                            for name, value in (("eval/q_abs_error", final_q_error),
                                                ("bound/active_fraction", mean_violation)))
    mechanism = mechanism_section(tasks, methods, per, output_dir, stem, q_lower, bound_lower)
    sentence = evidence(intervals, improvement, q_lower, bound_lower) if compare else None
    write(command(grids, output), output, configs, tasks, methods, per, intervals, improvement, png,
          [s[-1] for s in seconds], mechanism, sentence, left_out)
    print(open(output).read())


def verdict(intervals, improvement, task_intervals) -> str:
    """What the intervals do and do not show, in words."""
    text = ""
    for name, label in (("iqm", "IQM"), ("mean", "mean")):
        higher = statistics.higher_interval({m: intervals[m][name] for m in ("beer", "ddpg")})
        text += (f"The {label} intervals do not overlap: at this budget {higher.upper()} scores higher across these "
                 "tasks, beyond what resampling the seeds explains. " if higher else
                 f"The {label} intervals overlap: across these tasks the runs cannot tell BEER from DDPG at this "
                 "budget. ")
    if improvement is not None:
        text += (f"P(BEER > DDPG) = {improvement[0]:.2f} with interval [{improvement[1]:.2f}, {improvement[2]:.2f}]"
                 + (", which excludes 0.5. " if improvement[1] > 0.5 or improvement[2] < 0.5 else ", which contains "
                    "0.5 (no difference). "))
    apart = {t: statistics.higher_interval({m: per_method[m] for m in ("beer", "ddpg")})
             for t, per_method in task_intervals.items()}
    apart = {t: m for t, m in apart.items() if m}
    text += ("Per task, the seeds' intervals of the mean final return separate only on "
             + ", ".join(f"{t} ({m.upper()} higher)" for t, m in apart.items()) + "; on the others they overlap. "
             if apart else "Per task, the seeds' intervals of the mean final return overlap on every task. ")
    return text + ("The intervals cover only the uncertainty from the seeds run here (a few per task, where the "
                   "bootstrap is itself rough); they say nothing about other tasks, longer training, or other "
                   "hyperparameters, and nothing about the paper's 1M-step 12-task claim.")


# BEER's mechanism (He et al., ICLR 2024): what the grid's runs record of it (`rl_grid.MECHANISM_METRICS`) and its
# name in the report's table.
MECHANISM = (("eval/q_abs_error", r"\|Q error\| (critic Q(s0, pi(s0)) vs discounted MC return)"),
             ("eval/q_error", "Q error (signed: > 0 overestimates)"),
             ("rank/srank", "srank of the critic's features (of 256)"),
             ("bound/cosine", "cosine of consecutive features"),
             ("bound/bound", "BEER's bound on that cosine"),
             ("bound/active_fraction", "fraction of the batch with cosine > bound (BEER's penalty active)"))


def recorded(tasks, methods, per, name: str) -> bool:
    """Whether every run of the report records the mechanism series `name`."""
    return all(name in r.get("mechanism", {}) for t in tasks for m in methods for r in per[(t, m)])


def final_q_error(run: dict) -> float:
    """The run's |Q error| at its last evaluation."""
    return run["mechanism"]["eval/q_abs_error"][-1][1]


def mean_violation(run: dict) -> float:
    """The fraction of the replay batch whose consecutive-feature cosine exceeds BEER's bound, averaged over the run's
    logs (the penalty's active fraction for BEER; what the bound would flag for DDPG)."""
    return float(np.mean([v for _, v in run["mechanism"]["bound/active_fraction"]]))


def beer_lower(tasks, per, value) -> statistics.Interval:
    """P(BEER's `value(run)` < DDPG's): rliable's probability of improvement on the negated values (a Mann-Whitney
    statistic per task, so tasks of different scales average fairly), with its stratified-bootstrap interval."""
    values = {m: -np.array([[value(r) for r in per[(t, m)]] for t in tasks]).T for m in ("beer", "ddpg")}
    return statistics.probability_of_improvement(values, "beer", "ddpg")


def evidence(intervals, improvement: statistics.Interval, q_lower: statistics.Interval | None = None,
             bound_lower: statistics.Interval | None = None) -> str:
    """The report's (and the README's) sentence: whether BEER's mechanism (consecutive features kept below the
    bound, `bound_lower`), its predicted consequence (a smaller Q-estimation error, `q_lower`) and its effect (a
    higher return) are visible in the intervals, and what the intervals rule out where they are not."""
    def stated(name: str, interval: statistics.Interval, event: str) -> str:
        p, low, high = interval
        excluded = [f"P > {high:.2f}"] * (high < 1) + [f"P < {low:.2f}"] * (low > 0)
        return (f"{name} is " + compared(low - 0.5, high - 0.5, "visible", "reversed", "not visible")
                + f": P({event}) = {p:.2f} [{low:.2f}, {high:.2f}]"
                + (", which excludes no difference (0.5)" if low > 0.5 or high < 0.5 else
                   ", which rules out " + (" and ".join(excluded) or "nothing")))

    parts = []
    if bound_lower is not None:
        parts.append(stated("BEER's mechanism, its bound on the similarity of consecutive critic features,",
                            bound_lower, "BEER's share of the batch above the bound < DDPG's, averaged over each "
                            "run's logs"))
    if q_lower is not None:
        parts.append(stated("its predicted consequence, a smaller Q-estimation error," if parts else
                            "BEER's predicted consequence, a smaller Q-estimation error,", q_lower,
                            "BEER's final |Q error| < DDPG's"))
    text = "; ".join(parts) + ("; " if parts else "")
    iqm = {m: intervals[m]["iqm"] for m in ("beer", "ddpg")}
    return (text + stated("its effect on return" if text else "BEER's effect on return", improvement,
                          "BEER's final return > DDPG's")
            + f" (IQM of return/1000: BEER {iqm['beer'][0]:.3f} [{iqm['beer'][1]:.3f}, {iqm['beer'][2]:.3f}], DDPG "
            f"{iqm['ddpg'][0]:.3f} [{iqm['ddpg'][1]:.3f}, {iqm['ddpg'][2]:.3f}]).")


def mechanism_section(tasks, methods, per, output_dir: str, stem: str, q_lower: statistics.Interval | None,
                      bound_lower: statistics.Interval | None) -> list[str]:
    """The mechanism's table (each metric's last value per run: mean [95 % bootstrap CI] over seeds), its curves
    (the Q error and srank against steps) and what the Q-error intervals show; empty when the runs record none."""
    from jaxrep.metrics.convergence import bootstrap_mean_ci

    recorded_metrics = [(name, label) for name, label in MECHANISM if recorded(tasks, methods, per, name)]
    if not recorded_metrics:
        return []
    lines = ["## BEER's mechanism: Q-estimation error, srank and the bound (last value per run; mean [95 % "
             "bootstrap CI] over seeds)", "",
             "The Q error is measured at each evaluation on its own episodes (the critic's Q(s_0, pi(s_0)) at each "
             "episode's start against that episode's discounted return, gamma 0.99); srank (delta 0.01) and the "
             "cosine of consecutive critic features with BEER's bound on it are measured on a replay batch at each "
             "log (for DDPG too, which does not use them).", "",
             "| task | metric | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    finals = {}
    for t in tasks:
        for name, label in recorded_metrics:
            cells = []
            for m in methods:
                finals[(t, m, name)] = bootstrap_mean_ci([r["mechanism"][name][-1][1] for r in per[(t, m)]])
                mean, low, high = finals[(t, m, name)]
                cells.append(f"{mean:.3g} [{low:.3g}, {high:.3g}]")
            lines.append(f"| {t} | {label} | " + " | ".join(cells) + " |")
    pictures = []
    for name, picture, ylabel in (("eval/q_abs_error", "q_error", "|Q error|"), ("rank/srank", "srank", "srank")):
        if recorded(tasks, methods, per, name):
            path = os.path.join(output_dir, f"{stem}_{picture}.png")
            steps = {t: [s for s, _ in per[(t, methods[0])][0]["mechanism"][name]] for t in tasks}
            curves = {t: {m: np.array([[v for _, v in r["mechanism"][name]] for r in per[(t, m)]]) for m in methods}
                      for t in tasks}
            rl_figures.plot_learning_curves(path, steps, curves, ylabel=ylabel)
            pictures += [f"![{ylabel} against steps]({os.path.basename(path)})", ""]
    if q_lower is not None:
        lines += ["", "**What the Q-error intervals show.** " + mechanism_verdict(tasks, finals)
                  + f" Over the tasks, P(BEER's final |Q error| < DDPG's) = {q_lower[0]:.2f} [{q_lower[1]:.2f}, "
                  f"{q_lower[2]:.2f}] (rliable's probability of improvement; 0.5: no difference)."]
    if bound_lower is not None:
        means = {(t, m): bootstrap_mean_ci([mean_violation(r) for r in per[(t, m)]]) for t in tasks for m in methods}
        lines += ["", "**The bound.** The share of the replay batch whose consecutive-feature cosine exceeds BEER's "
                  "bound, averaged over each run's logs (BEER's penalty acts there; DDPG is only measured): "
                  + "; ".join(f"{t}: " + ", ".join(f"{m.upper()} {means[(t, m)][0]:.4f} [{means[(t, m)][1]:.4f}, "
                                                   f"{means[(t, m)][2]:.4f}]" for m in methods) for t in tasks)
                  + f". Over the tasks, P(BEER's share < DDPG's) = {bound_lower[0]:.2f} [{bound_lower[1]:.2f}, "
                  f"{bound_lower[2]:.2f}]."]
    return lines + [""] + pictures


def mechanism_verdict(tasks, finals) -> str:
    """Per task, whether BEER's final |Q error| interval lies below DDPG's, above it, or overlaps it."""
    parts = []
    for t in tasks:
        beer, ddpg = finals[(t, "beer", "eval/q_abs_error")], finals[(t, "ddpg", "eval/q_abs_error")]
        lower = statistics.higher_interval({"ddpg": ddpg, "beer": beer})
        parts.append(f"{t}: " + ("BEER's is lower (the paper's claim)" if lower == "ddpg" else
                                 "BEER's is higher" if lower == "beer" else "the intervals overlap"))
    return ("Final |Q error| per task, BEER against DDPG: " + "; ".join(parts) + ". The bound's cosine and srank are "
            "reported, not judged: the paper argues for an adaptive rank, not a higher or lower one.")


def final_return_intervals(tasks, methods, per) -> dict[str, dict[str, tuple[float, float, float]]]:
    """{task: {method: (mean, low, high)}}: the percentile-bootstrap interval of the mean final return over seeds."""
    from jaxrep.metrics.convergence import bootstrap_mean_ci

    return {t: {m: bootstrap_mean_ci([r["evals"][-1][1] for r in per[(t, m)]]) for m in methods} for t in tasks}


def command(grids: list[str], output: str) -> str:
    """The command line that rebuilds the report, its flags where they are not the defaults."""
    return ("python -m benchmarks.beer_report" + ("" if grids == MECHANISM_GRIDS else f" --grid={','.join(grids)}")
            + ("" if output == REPORT else f" --output={output}"))


def write(rebuild: str, output: str, configs, tasks, methods, per, intervals, improvement, png, seconds,
          mechanism: list[str], sentence: str | None, left_out: int) -> None:
    seeds = [r["seed"] for r in per[(tasks[0], methods[0])]]
    first = next(iter(configs.values()))
    steps = max(r["env_steps"] for t in tasks for m in methods for r in per[(t, m)])
    repeat = first.get("action_repeat", 1) or 1  # 0: the task preset's, 1
    lines = [
        "# BEER-DDPG vs DDPG: a task x seed grid on this machine",
        "",
        f"Generated by `{rebuild}` from the `train.rl_grid` runs in {', '.join(f'`{g}`' for g in configs)}. "
        f"Agent: the official BEER settings (256-256 actor and critic, Adam 3e-4, "
        f"batch {first.get('batch_size', 256)}, tau 0.005, beta {first.get('beer_coef', 1e-3):g}), action repeat "
        f"{repeat}, UTD {first.get('updates_per_step', 1)}. {len(seeds)} seeds per task and "
        f"method (seeds {', '.join(map(str, seeds))}; on MJX one vmapped program per task and method, "
        "`jaxrep.rl.population`).",
        "",
    ]
    if sentence is not None:
        lines += ["## What the evidence shows", "", sentence, ""]
    lines += [
        "| task | loop | agent steps per run | uniform-random first | evaluated every |",
        "|---|---|---|---|---|",
    ]
    for t in tasks:
        run, config = per[(t, methods[0])][0], configs[per[(t, methods[0])][0]["grid"]]
        lines.append(f"| {t} | {run['loop']} | {run['env_steps']:,} | {config.get('start_steps', 0):,} | "
                     f"{config.get('eval_every', 0):,} |")
    if seconds:
        lines += ["", f"Cost: {sum(seconds) / 3600:.1f} h of wall-clock over the runs that report it."]
    lines += ["", "Inputs: each grid's `results.json` (every run's evaluations) and `config.json`; nothing else."]
    missing = unfinished_tasks(configs, tasks)
    if missing:
        lines += ["", f"**Partial grid:** no finished runs of every method yet for {', '.join(missing)}; the "
                  "aggregates below cover only the tasks listed above."]
    if left_out:
        lines += ["", f"**Partial grid:** {left_out} finished runs are left out: every cell is reported on the seeds "
                  "that all cells have finished."]
    lines += [
        "",
        f"Each run takes at most {steps:,} agent steps ({steps * repeat:,} control steps at action repeat {repeat}), "
        f"{steps / 1e6:.0%} of the paper's 1M updates, on {len(tasks)} tasks, not its 12-task protocol (the paper's "
        "task list could not be established; see `configs/rl.py`). It measures BEER against DDPG at a small budget; "
        "it cannot confirm or refute the paper's 1M-step claim.",
        "",
        "## Final evaluation return per task (mean [95 % bootstrap CI] over seeds)",
        "",
        "| task | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    task_intervals = final_return_intervals(tasks, methods, per)
    for t in tasks:
        cells = []
        for m in methods:
            mean, low, high = task_intervals[t][m]
            values = ", ".join(f"{r['evals'][-1][1]:.0f}" for r in per[(t, m)])
            cells.append(f"{mean:.0f} [{low:.0f}, {high:.0f}] ({values})")
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
    if sentence is not None:
        lines += ["", "**What the intervals show.** " + verdict(intervals, improvement, task_intervals)]
    lines += ["", f"![IQM and mean]({os.path.basename(png['aggregates'])})", "",
              f"![performance profiles]({os.path.basename(png['profiles'])})", "",
              f"![learning curves]({os.path.basename(png['curves'])})", ""] + mechanism
    with open(output, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":  # flags defined here only: tests import this module beside other benchmarks
    flags.DEFINE_list("grid", MECHANISM_GRIDS, "Work directories of train.rl_grid runs, comma-separated.")
    flags.DEFINE_string("output", REPORT, "Markdown report; PNGs go next to it.")
    flags.DEFINE_integer("reps", 20_000, "Bootstrap resamples of the aggregate intervals.")
    app.run(main)

"""Run a grid of tasks x methods x seeds (DDPG / BEER-DDPG) and write one results table.

  python -m train.rl_grid --config=configs/rl_grid.py:cpu --workdir=/tmp/rl_grid
  python -m train.rl_grid --config=configs/rl_grid.py:study --workdir=/work/beer_study

Cells run one after another. On MJX (`loop=mjx`, or `auto` where MuJoCo Playground has the task and `host_tasks`
does not name it) a cell's seeds
are one vmapped program (`train.rl_mjx`, `num_seeds`) in `<workdir>/<task>/<method>/mjx`; on the host loop
(`train.rl`) each seed runs in `<workdir>/<task>/<method>/seed<k>`. Every run resumes from its checkpoints, a
finished run leaves `result.json` and is skipped when the grid is started again, and a SIGTERM stops the grid
after the running cell saved its state (exit 0; rerun the same command to continue). After each run the grid
rewrites `results.json` (every run's evaluations and wall-clock, summed over its pieces) and `results.md`
(final evaluation return per task, method and seed, with the mean over seeds).
"""

from __future__ import annotations

import json

import numpy as np

from configs import rl as rl_configs
from configs import rl_grid as grid_configs
from configs import rl_mjx as mjx_configs
from jaxrep import files
from jaxrep.config_checks import ConfigError
from jaxrep.run.active_clock import ActiveClock
from jaxrep.run.checkpoint import PreemptionGuard
from jaxrep.run.logging import read_metrics, save_config


def mjx_tasks() -> tuple[str, ...]:
    """The "domain-task" names MuJoCo Playground provides; none without the `playground` extra."""
    try:
        from envs.mjx import playground_name
    except ImportError:
        return ()
    from envs.dmc import task_names

    def in_playground(task: str) -> bool:
        try:
            return bool(playground_name(task))
        except ValueError:
            return False

    return tuple(task for task in task_names() if in_playground(task))


def loop_of(config, task: str, available: tuple[str, ...]) -> str:
    if config.loop == "auto":
        return "mjx" if task in available and task not in grid_configs.names(config.host_tasks) else "host"
    if config.loop == "mjx" and task not in available:
        raise ConfigError(f"loop: no MuJoCo Playground env for {task!r} (or the playground extra is not installed); "
                          "use loop='host' or 'auto'")
    return config.loop


def host_run_config(grid, task: str, method: str, seed: int):
    config = rl_configs.get_config(task)
    config.method, config.seed = method, seed
    config.beer.coef = grid.beer_coef
    if grid.action_repeat:
        config.env.action_repeat = grid.action_repeat
    config.total_env_steps, config.start_steps = grid.total_env_steps, grid.start_steps
    config.updates_per_step, config.update_every = grid.updates_per_step, 1
    config.batch_size = grid.batch_size
    config.replay_capacity = min(grid.replay_capacity, grid.total_env_steps)
    config.eval_every, config.eval_episodes = grid.eval_every, grid.eval_episodes
    config.checkpoint_every, config.log_every = grid.eval_every, max(grid.eval_every // 2, 1)
    return config


def mjx_run_config(grid, task: str, method: str):
    config = mjx_configs.get_config(task)
    config.method, config.seed, config.num_seeds = method, grid.seed, grid.num_seeds
    config.beer.coef = grid.beer_coef
    if grid.action_repeat:
        config.env.action_repeat = grid.action_repeat
    config.env.num_envs = grid.num_envs
    config.total_env_steps, config.start_steps = grid.total_env_steps, grid.start_steps
    config.updates_per_iteration = grid.updates_per_step * grid.num_envs
    config.batch_size = grid.batch_size
    config.iterations_per_chunk = grid.eval_every // grid.num_envs
    config.eval_every_chunks = config.checkpoint_every_chunks = 1
    config.replay_capacity = min(grid.replay_capacity, grid.total_env_steps)
    return config


def cells(grid) -> list[dict]:
    """Every run of the grid: {task, method, loop, seeds, workdir, config}, in task-major order."""
    available = mjx_tasks() if grid.loop != "host" else ()
    runs = []
    for task in grid_configs.names(grid.tasks):
        loop = loop_of(grid, task, available)
        for method in grid_configs.names(grid.methods):
            if loop == "mjx":
                runs.append({"task": task, "method": method, "loop": loop,
                             "seeds": [grid.seed + i for i in range(grid.num_seeds)], "workdir": f"{task}/{method}/mjx",
                             "config": mjx_run_config(grid, task, method)})
            else:
                runs += [{"task": task, "method": method, "loop": loop, "seeds": [seed],
                          "workdir": f"{task}/{method}/seed{seed}", "config": host_run_config(grid, task, method, seed)}
                         for seed in range(grid.seed, grid.seed + grid.num_seeds)]
    return runs


def run_cell(cell: dict, workdir: str) -> dict | None:
    """Trains (or resumes) one run; its per-seed evaluations, or None if it was preempted."""
    result_path = files.path(files.join(workdir, "result.json"))
    if result_path.exists():
        return json.loads(result_path.read_text())
    with ActiveClock() as clock:
        summary, evals = train_cell(cell, workdir)
    seconds = add_seconds(workdir, clock.seconds)
    if summary["preempted"]:
        return None
    result = {"task": cell["task"], "method": cell["method"], "loop": cell["loop"], "seeds": cell["seeds"],
              "env_steps": summary["env_steps"], "evals": evals,
              "mechanism": [mechanism_series(workdir, member=m if len(cell["seeds"]) > 1 else None)
                            for m in range(len(cell["seeds"]))],
              "seconds": seconds}
    files.write_json_atomic(result_path, result)
    return result


def train_cell(cell: dict, workdir: str) -> tuple[dict, list]:
    """Runs the cell's entrypoint; (its summary, per-seed evaluations [[step, return], ...])."""
    if cell["loop"] == "mjx":
        from jaxrep.experiments import rl_mjx

        summary = rl_mjx.train_and_evaluate(cell["config"], workdir)
        evals = [[[step, returns[m]] for step, returns in summary["member_evals"]] for m in range(len(cell["seeds"]))]
    else:
        from jaxrep.experiments import rl

        summary = rl.train_and_evaluate(cell["config"], workdir)
        evals = [[list(e) for e in summary["evals"]]]
    return summary, evals


# BEER's mechanism as the loops log it (`jaxrep.experiments.rl`): the critic's Q-estimation error at each evaluation,
# and at each log the critic features' srank and BEER's cosine of consecutive features against its bound.
MECHANISM_METRICS = ("eval/q_error", "eval/q_abs_error", "eval/q_estimate", "eval/mc_return", "rank/srank",
                     "bound/cosine", "bound/bound", "bound/active_fraction")


def mechanism_series(workdir: str, member: int | None = None) -> dict[str, list]:
    """{metric: [[step, value], ...]} of `MECHANISM_METRICS` in the run's `metrics.jsonl`, of one `member` of an MJX
    population (its `<metric>_member<m>` entries) or of the run (a step logged twice, by a resumed run, keeps its
    last value); metrics the loop did not log are left out."""
    series: dict[str, dict[int, float]] = {}
    suffix = "" if member is None else f"_member{member}"
    logged = read_metrics(workdir) if files.path(files.join(workdir, "metrics.jsonl")).exists() else []
    for record in logged:
        for name in MECHANISM_METRICS:
            if isinstance(record.get(name + suffix), float):
                series.setdefault(name, {})[record["step"]] = record[name + suffix]
    return {name: sorted([step, value] for step, value in values.items()) for name, values in series.items()}


def add_seconds(workdir: str, seconds: float) -> float:
    """Adds one piece's wall-clock (time the process was stopped left out, `jaxrep.run.active_clock`) to the run's
    total in `grid_seconds.json` (a resumed run counts every piece)."""
    path = files.path(files.join(workdir, "grid_seconds.json"))
    total = seconds + (json.loads(path.read_text())["seconds"] if path.exists() else 0.0)
    files.write_json_atomic(path, {"seconds": total})
    return total


def write_tables(workdir: str, results: list[dict]) -> None:
    """`results.json` (one entry per task, method and seed) and `results.md` (final returns)."""
    rows = [{"task": r["task"], "method": r["method"], "seed": seed, "loop": r["loop"], "env_steps": r["env_steps"],
             "evals": evals, "run_seconds": r.get("seconds"), "mechanism": mechanism}
            for r in results for seed, evals, mechanism in zip(r["seeds"], r["evals"],
                                                               r.get("mechanism", [{}] * len(r["seeds"])))]
    files.write_json_atomic(files.join(workdir, "results.json"), rows)
    lines = ["| task | method | loop | env steps | final eval return per seed | mean |", "|---|---|---|---|---|---|"]
    for r in results_by_cell(rows):
        finals = [row["evals"][-1][1] for row in r]
        per_seed = ", ".join(f"{row['seed']}: {v:.1f}" for row, v in zip(r, finals))
        lines.append(f"| {r[0]['task']} | {r[0]['method']} | {r[0]['loop']} | {r[0]['env_steps']} | {per_seed} | "
                     f"{np.mean(finals):.1f} |")
    files.write_bytes(files.join(workdir, "results.md"), ("\n".join(lines) + "\n").encode())


def results_by_cell(rows: list[dict]) -> list[list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["method"]), []).append(row)
    return list(groups.values())


def run_grid(grid, workdir: str) -> dict:
    """Runs (or resumes) every cell of the grid; {"results": rows done, "preempted": bool}."""
    grid_configs.validate(grid)
    runs = cells(grid)
    save_config(workdir, grid)
    results = []
    with PreemptionGuard() as guard:
        for cell in runs:
            result = run_cell(cell, files.join(workdir, cell["workdir"]))
            if result is None or guard.requested:
                if result is not None:
                    results.append(result)
                write_tables(workdir, results)
                return {"results": results, "preempted": True}
            results.append(result)
            write_tables(workdir, results)
    return {"results": results, "preempted": False}

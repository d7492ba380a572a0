"""The finished runs of one or more `train.rl_grid` work directories, for `benchmarks.beer_report` (no flags)."""

from __future__ import annotations

import json
import os


def load(grids: list[str]) -> tuple[dict[str, dict], list[dict]]:
    """({grid: its config}, every run's row with its "grid"). A run (task, method, seed) already in an earlier grid
    is skipped, so a task's runs may come from different grids (a study split over processes), but never from
    different loops (ValueError)."""
    configs, rows = {}, []
    for grid in grids:
        with open(os.path.join(grid, "results.json")) as f:
            grid_rows = json.load(f)
        path = os.path.join(grid, "config.json")
        configs[grid] = json.load(open(path)) if os.path.exists(path) else {}
        seen = {(r["task"], r["method"], r["seed"]) for r in rows}
        rows += [dict(r, grid=grid) for r in grid_rows if (r["task"], r["method"], r["seed"]) not in seen]
    for task in dict.fromkeys(r["task"] for r in rows):
        loops = {r["loop"] for r in rows if r["task"] == task}
        if len(loops) > 1:
            raise ValueError(f"{task}: its runs in {grids} come from different loops ({sorted(loops)})")
    return configs, rows


def comparable_runs(rows: list[dict], methods: list[str]) -> tuple[list[str], list[int]]:
    """(the tasks every method has finished runs on, the seeds finished in every cell (task, method) of those tasks):
    rliable needs (runs, tasks) arrays, so a partial grid is reported on the seeds that all its cells share."""
    tasks = [task for task in dict.fromkeys(r["task"] for r in rows)
             if all(any(r["task"] == task and r["method"] == m for r in rows) for m in methods)]
    cells = [{r["seed"] for r in rows if r["task"] == task and r["method"] == m} for task in tasks for m in methods]
    return tasks, sorted(set.intersection(*cells)) if cells else []


def unfinished_tasks(configs: dict[str, dict], tasks: list[str]) -> list[str]:
    """The grids' configured tasks (their `tasks` fields) that the report does not cover."""
    configured = [t.strip() for config in configs.values() for t in config.get("tasks", "").split(",") if t.strip()]
    return [t for t in dict.fromkeys(configured) if t not in tasks]

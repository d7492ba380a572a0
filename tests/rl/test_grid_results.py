"""benchmarks/grid_results.py (what beer_report reads): several grids merge into one report's rows, each task
from its first grid."""

import json

from benchmarks.grid_results import complete_tasks, load, unfinished_tasks


def _grid(path, task_rows, **config):
    path.mkdir()
    rows = [{"task": task, "method": method, "seed": seed, "loop": loop, "env_steps": steps, "evals": [[steps, 1.0]]}
            for task, method, seed, loop, steps in task_rows]
    (path / "results.json").write_text(json.dumps(rows))
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


def test_grids_merge_and_a_task_comes_from_its_first_grid(tmp_path):
    mjx = _grid(tmp_path / "mjx", [("cartpole-swingup", m, s, "mjx", 40) for m in ("beer", "ddpg") for s in (0, 1)],
                start_steps=5)
    host = _grid(tmp_path / "host", [("cheetah-run", m, s, "host", 20) for m in ("beer", "ddpg") for s in (0, 1)]
                 + [("cartpole-swingup", "beer", 0, "host", 20)], start_steps=2)
    configs, rows = load([mjx, host])
    assert configs == {mjx: {"start_steps": 5}, host: {"start_steps": 2}}
    assert [(r["task"], r["grid"]) for r in rows].count(("cartpole-swingup", mjx)) == 4
    assert all(r["grid"] == mjx for r in rows if r["task"] == "cartpole-swingup")
    assert sum(r["task"] == "cheetah-run" and r["grid"] == host for r in rows) == 4
    assert complete_tasks(rows, ["beer", "ddpg"]) == ["cartpole-swingup", "cheetah-run"]


def test_a_partial_grid_names_its_unfinished_tasks():
    configs = {"a": {"tasks": "cartpole-swingup, cheetah-run"}, "b": {"tasks": "cheetah-run,walker-walk"}, "c": {}}
    assert unfinished_tasks(configs, ["cartpole-swingup"]) == ["cheetah-run", "walker-walk"]
    assert unfinished_tasks(configs, ["cartpole-swingup", "cheetah-run", "walker-walk"]) == []

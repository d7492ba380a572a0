"""benchmarks/grid_results.py (what beer_report reads): several grids merge into one report's rows, each run
(task, method, seed) from its first grid, a task's runs from one loop."""

import json

import pytest

from benchmarks.grid_results import comparable_runs, load, unfinished_tasks


def _grid(path, task_rows, **config):
    path.mkdir()
    rows = [{"task": task, "method": method, "seed": seed, "loop": loop, "env_steps": steps, "evals": [[steps, 1.0]]}
            for task, method, seed, loop, steps in task_rows]
    (path / "results.json").write_text(json.dumps(rows))
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


def test_grids_merge_and_a_run_comes_from_its_first_grid(tmp_path):
    mjx = _grid(tmp_path / "mjx", [("cartpole-swingup", m, s, "mjx", 40) for m in ("beer", "ddpg") for s in (0, 1)],
                start_steps=5)
    host = _grid(tmp_path / "host", [("cheetah-run", m, s, "host", 20) for m in ("beer", "ddpg") for s in (0, 1)]
                 + [("cartpole-swingup", "beer", 0, "host", 20)], start_steps=2)
    configs, rows = load([mjx, host])
    assert configs == {mjx: {"start_steps": 5}, host: {"start_steps": 2}}
    assert [(r["task"], r["grid"]) for r in rows].count(("cartpole-swingup", mjx)) == 4
    assert all(r["grid"] == mjx for r in rows if r["task"] == "cartpole-swingup")
    assert sum(r["task"] == "cheetah-run" and r["grid"] == host for r in rows) == 4
    assert comparable_runs(rows, ["beer", "ddpg"]) == (["cartpole-swingup", "cheetah-run"], [0, 1])


def test_a_tasks_runs_may_come_from_several_grids_of_one_loop(tmp_path):
    beer = _grid(tmp_path / "beer", [("walker-walk", "beer", s, "host", 20) for s in (0, 1)])
    ddpg = _grid(tmp_path / "ddpg", [("walker-walk", "ddpg", 0, "host", 20), ("walker-walk", "ddpg", 1, "host", 30)])
    ddpg_seed_1 = _grid(tmp_path / "ddpg_seed_1", [("walker-walk", "ddpg", 1, "host", 20)])
    _, rows = load([beer, ddpg_seed_1, ddpg])
    assert [(r["method"], r["seed"], r["grid"]) for r in rows] == [
        ("beer", 0, beer), ("beer", 1, beer), ("ddpg", 1, ddpg_seed_1), ("ddpg", 0, ddpg)]
    assert comparable_runs(rows, ["beer", "ddpg"]) == (["walker-walk"], [0, 1])
    mjx = _grid(tmp_path / "mjx", [("walker-walk", "ddpg", s, "mjx", 20) for s in (0, 1)])
    loops = r"^walker-walk: its runs in .* come from different loops \(\['host', 'mjx'\]\)$"
    with pytest.raises(ValueError, match=loops):
        load([beer, mjx])


def test_a_partial_grid_is_compared_on_the_seeds_every_cell_has_finished():
    rows = ([{"task": "cheetah-run", "method": "beer", "seed": s} for s in range(5)]
            + [{"task": "cheetah-run", "method": "ddpg", "seed": s} for s in (0, 1, 3)]
            + [{"task": "walker-walk", "method": m, "seed": s} for m in ("beer", "ddpg") for s in (1, 3, 4)]
            + [{"task": "cartpole-swingup", "method": "beer", "seed": 0}])
    assert comparable_runs(rows, ["beer", "ddpg"]) == (["cheetah-run", "walker-walk"], [1, 3])
    assert comparable_runs(rows[:5], ["beer", "ddpg"]) == ([], [])


def test_a_partial_grid_names_its_unfinished_tasks():
    configs = {"a": {"tasks": "cartpole-swingup, cheetah-run"}, "b": {"tasks": "cheetah-run,walker-walk"}, "c": {}}
    assert unfinished_tasks(configs, ["cartpole-swingup"]) == ["cheetah-run", "walker-walk"]
    assert unfinished_tasks(configs, ["cartpole-swingup", "cheetah-run", "walker-walk"]) == []

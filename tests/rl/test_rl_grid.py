"""train/rl_grid.py: the cells a grid runs, one results table, finished cells skipped, a preempted grid resumed."""

import json
import os

import pytest

from configs import rl_grid as grid_configs
from configs.rl import validate as validate_host
from jaxrep.config_checks import ConfigError
from jaxrep.experiments import rl as rl_experiment
from jaxrep.experiments import rl_grid


def tiny_grid(**overrides):
    """cartpole-balance, both methods, host loop, 400 env steps (action repeat 8), two evaluations of 1 episode."""
    config = grid_configs.get_config("cpu")
    values = {"tasks": "cartpole-balance", "loop": "host", "num_seeds": 1, "total_env_steps": 400,
              "start_steps": 256, "eval_every": 200, "eval_episodes": 1, "action_repeat": 8, "num_envs": 8}
    for name, value in {**values, **overrides}.items():
        setattr(config, name, value)
    return config


def test_cells_map_the_grid_onto_run_configs():
    grid = tiny_grid(tasks="cartpole-balance,quadruped-walk", num_seeds=2, seed=3)
    runs = rl_grid.cells(grid)
    assert [(c["task"], c["method"], c["seeds"], c["workdir"]) for c in runs[:2]] == [
        ("cartpole-balance", "beer", [3], "cartpole-balance/beer/seed3"),
        ("cartpole-balance", "beer", [4], "cartpole-balance/beer/seed4")]
    assert len(runs) == 8 and all(c["loop"] == "host" for c in runs)
    config = runs[1]["config"]
    validate_host(config)
    assert (config.seed, config.method, config.total_env_steps, config.env.action_repeat, config.eval_every,
            config.replay_capacity) == (4, "beer", 400, 8, 200, 400)
    # MJX where Playground has the task (quadruped has none): one vmapped run per cell with all its seeds.
    pytest.importorskip("mujoco_playground")
    from configs.rl_mjx import validate as validate_mjx

    auto = rl_grid.cells(tiny_grid(tasks="cartpole-balance,quadruped-walk", num_seeds=2, loop="auto"))
    assert [(c["task"], c["loop"], c["seeds"]) for c in auto] == [
        ("cartpole-balance", "mjx", [0, 1]), ("cartpole-balance", "mjx", [0, 1]),
        ("quadruped-walk", "host", [0]), ("quadruped-walk", "host", [1]),
        ("quadruped-walk", "host", [0]), ("quadruped-walk", "host", [1])]
    mjx = auto[0]["config"]
    validate_mjx(mjx)
    assert (mjx.num_seeds, mjx.env.num_envs, mjx.iterations_per_chunk, mjx.updates_per_iteration) == (2, 8, 25, 8)
    with pytest.raises(ConfigError, match="loop: no MuJoCo Playground env for 'quadruped-walk'"):
        rl_grid.cells(tiny_grid(tasks="quadruped-walk", loop="mjx"))


def test_grid_validation_names_the_field():
    for name, value in (("methods", "beer,sac"), ("loop", "gpu"), ("eval_every", 300)):
        with pytest.raises(ConfigError, match=f"^{name}: "):
            grid_configs.validate(tiny_grid(**{name: value}))
    # An MJX chunk is one evaluation period of num_envs-wide iterations; the host loop has no such constraint.
    for loop in ("auto", "mjx"):
        with pytest.raises(ConfigError, match="^num_envs: 7 does not divide eval_every=200"):
            grid_configs.validate(tiny_grid(num_envs=7, loop=loop))
    grid_configs.validate(tiny_grid(num_envs=7, loop="host"))


def test_the_study_preset_runs_its_host_tasks_on_the_host_loop():
    study = grid_configs.get_config("study")
    grid_configs.validate(study)
    assert study.loop == "auto" and study.eval_every % study.num_envs == 0
    tasks, host_tasks = grid_configs.names(study.tasks), set(grid_configs.names(study.host_tasks))
    assert host_tasks and host_tasks < set(tasks)  # the study uses both loops
    # with every task available on MJX, exactly the listed host tasks run on the host; an unavailable one joins them
    loops = {task: rl_grid.loop_of(study, task, available=tasks) for task in tasks}
    assert {task for task, loop in loops.items() if loop == "host"} == host_tasks
    mjx_task = next(task for task in tasks if task not in host_tasks)
    assert rl_grid.loop_of(study, mjx_task, available=()) == "host"
    with pytest.raises(ConfigError, match="^host_tasks: 'walker-run' names tasks not in tasks="):
        grid_configs.validate(tiny_grid(host_tasks="walker-run"))
    mechanism = grid_configs.get_config("mechanism")  # BEER's mechanism study: its MJX cell last, after the host runs
    grid_configs.validate(mechanism)
    assert grid_configs.names(mechanism.tasks)[-1] not in grid_configs.names(mechanism.host_tasks)
    assert mechanism.eval_every % mechanism.num_envs == 0 and mechanism.start_steps >= mechanism.batch_size
    with pytest.raises(ConfigError, match="^preset: unknown rl_grid preset 'studdy'"):
        grid_configs.get_config("studdy")


def test_grid_writes_one_table_and_skips_finished_runs(tmp_path, monkeypatch):
    summary = rl_grid.run_grid(tiny_grid(), str(tmp_path))
    assert not summary["preempted"] and len(summary["results"]) == 2
    with open(tmp_path / "results.json") as f:
        rows = json.load(f)
    assert [(r["task"], r["method"], r["seed"], r["env_steps"]) for r in rows] == [
        ("cartpole-balance", "beer", 0, 400), ("cartpole-balance", "ddpg", 0, 400)]
    assert [step for step, _ in rows[0]["evals"]] == [200, 400]
    with open(os.path.join(tmp_path, "cartpole-balance", "ddpg", "seed0", "metrics.jsonl")) as f:
        logged = [json.loads(line) for line in f if "eval/return" in line]
    assert [r["eval/return"] for r in logged] == [r for _, r in rows[1]["evals"]]
    # BEER's mechanism, read back from each run's log: the Q-estimation error at every evaluation, and srank and
    # the bound's statistics where the updates were logged.
    mechanism = rows[1]["mechanism"]
    assert [step for step, _ in mechanism["eval/q_error"]] == [step for step, _ in rows[1]["evals"]]
    assert [value for _, value in mechanism["eval/q_error"]] == [r["eval/q_error"] for r in logged]
    assert {"rank/srank", "bound/cosine", "bound/bound"} <= set(rows[0]["mechanism"])
    table = (tmp_path / "results.md").read_text()
    assert "| cartpole-balance | beer | host | 400 |" in table and "| cartpole-balance | ddpg | host | 400 |" in table

    def must_not_train(config, workdir):
        raise AssertionError(f"retrained the finished run in {workdir}")

    monkeypatch.setattr(rl_experiment, "train_and_evaluate", must_not_train)
    again = rl_grid.run_grid(tiny_grid(), str(tmp_path))
    assert again["results"] == summary["results"]


def test_a_preempted_run_stops_the_grid_and_the_rerun_finishes_it(tmp_path, monkeypatch):
    calls = []

    def fake_run(config, workdir):  # the second run is preempted before its end
        calls.append(config.method)
        preempted = len(calls) == 2
        steps = config.total_env_steps // 2 if preempted else config.total_env_steps
        return {"env_steps": steps, "evals": [(steps, float(len(calls)))], "preempted": preempted}

    monkeypatch.setattr(rl_experiment, "train_and_evaluate", fake_run)
    first = rl_grid.run_grid(tiny_grid(), str(tmp_path))
    assert first["preempted"] and [r["method"] for r in first["results"]] == ["beer"]
    assert not os.path.exists(tmp_path / "cartpole-balance" / "ddpg" / "seed0" / "result.json")
    second = rl_grid.run_grid(tiny_grid(), str(tmp_path))
    assert not second["preempted"] and calls == ["beer", "ddpg", "ddpg"]
    assert [r["evals"][0][-1][1] for r in second["results"]] == [1.0, 3.0]


def test_an_mjx_cell_gives_one_row_per_seed(tmp_path, monkeypatch):
    pytest.importorskip("mujoco_playground")
    from jaxrep.experiments import rl_mjx as mjx_experiment

    def fake_population(config, workdir):  # two members, two evaluations
        assert config.num_seeds == 2
        os.makedirs(workdir)
        with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:  # what rl_mjx logs for each member
            f.writelines(json.dumps({"step": step, "eval/q_error": 0.5, "eval/q_error_member0": 0.25 * step,
                                     "eval/q_error_member1": -1.0}) + "\n" for step in (200, 400))
        return {"env_steps": 400, "preempted": False, "member_evals": [[200, [1.0, 2.0]], [400, [3.0, 4.0]]]}

    monkeypatch.setattr(mjx_experiment, "train_and_evaluate", fake_population)
    rl_grid.run_grid(tiny_grid(loop="mjx", methods="ddpg", num_seeds=2, seed=5), str(tmp_path))
    with open(tmp_path / "results.json") as f:
        rows = json.load(f)
    assert [(r["seed"], r["loop"], r["evals"]) for r in rows] == [
        (5, "mjx", [[200, 1.0], [400, 3.0]]), (6, "mjx", [[200, 2.0], [400, 4.0]])]
    assert [r["mechanism"] for r in rows] == [{"eval/q_error": [[200, 50.0], [400, 100.0]]},
                                              {"eval/q_error": [[200, -1.0], [400, -1.0]]}]
    assert "| cartpole-balance | ddpg | mjx | 400 | 5: 3.0, 6: 4.0 | 3.5 |" in (tmp_path / "results.md").read_text()


def test_the_paper_task_list_runs_on_mjx_except_quadruped():
    pytest.importorskip("mujoco_playground")
    from configs.rl import PAPER_TASKS

    assert [task for task in PAPER_TASKS if task not in rl_grid.mjx_tasks()] == ["quadruped-run", "quadruped-walk"]
    assert {c["loop"] for c in rl_grid.cells(tiny_grid(tasks=",".join(PAPER_TASKS), loop="auto"))
            if c["task"].startswith("quadruped")} == {"host"}

"""train/rl_mjx.py end to end on MJX cartpole: counters after N chunks, outputs, bitwise resume after a chunk.

The fast tests of the same properties use a toy env (tests/rl/test_fused.py) and MJX's checkpoint round trip
(tests/envs/test_mjx.py); the end-to-end run is marked slow.
"""

import json
import os
import shutil
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from tests.extras import import_extra

import_extra("mujoco_playground", "playground")

from configs.rl_mjx import ConfigError, get_config, validate  # noqa: E402
from jaxrep.experiments import rl_mjx as mjx_experiment  # noqa: E402
from jaxrep.run.logging import read_metrics  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_config():
    """2 envs, 10 agent steps per episode, 5 iterations (10 env steps) per chunk, updates after 16 env steps."""
    config = get_config("cpu")
    config.env.num_envs = 2
    config.env.action_repeat = 4
    config.env.episode_length = 40
    config.total_env_steps = 30
    config.iterations_per_chunk = 5
    config.start_steps = 16
    config.batch_size = 8
    config.replay_capacity = 24
    config.updates_per_iteration = 2
    config.agent.hidden_sizes = (32, 32)
    config.eval_every_chunks = 1
    config.checkpoint_every_chunks = 1
    config.checkpoint_keep = 3
    return config


def test_config_validation():
    validate(get_config("cpu"))
    validate(get_config("cheetah-run"))
    config = tiny_config()
    config.total_env_steps = 25
    with pytest.raises(ConfigError, match="total_env_steps"):
        validate(config)
    config = tiny_config()
    config.task = "cartpole-balanse"
    with pytest.raises(ConfigError, match="CartpoleBalance"):
        validate(config)
    for field, value, message in (("num_seeds", 0, "num_seeds"), ("beer_coefs", "0.1,x", "comma-separated"),
                                  ("beer_coefs", "0.1,-1", "must be >= 0")):
        config = tiny_config()
        setattr(config, field, value)
        with pytest.raises(ConfigError, match=f"{field}: .*{message}|{message}"):
            validate(config)
    config = tiny_config()
    config.method, config.beer_coefs = "ddpg", "0.1"
    with pytest.raises(ConfigError, match="beer_coefs: a BEER weight grid needs method 'beer'"):
        validate(config)


@pytest.mark.slow  # MJX compiles the chunk and the evaluation in each of the two runs: 1-3 min on 2 cores
def test_run_counts_and_resumes_bitwise(tmp_path):
    uninterrupted_dir, interrupted_dir = str(tmp_path / "uninterrupted"), str(tmp_path / "interrupted")
    config = tiny_config()
    config.num_seeds = 2
    expected = mjx_experiment.train_and_evaluate(config, uninterrupted_dir)
    # 3 chunks x 5 iterations x 2 envs per seed; updates in iterations ending at env steps 18, 20, ..., 30 (7 x 2).
    assert expected["env_steps"] == 30 and expected["updates"] == 14
    state = expected["state"]
    np.testing.assert_array_equal(state.buffer.size, [24, 24])
    np.testing.assert_array_equal(state.buffer.position, [30 % 24] * 2)
    np.testing.assert_array_equal(np.asarray(state.env.episode), [[1, 1]] * 2)  # 15 steps per env, 10 per episode
    np.testing.assert_array_equal(np.asarray(state.env.episode_step), [[5, 5]] * 2)
    assert [step for step, _ in expected["evals"]] == [10, 20, 30] and np.isfinite(expected["final_eval_return"])
    assert expected["members"] == ["seed 0", "seed 1"]
    member_returns = np.array([returns for _, returns in expected["member_evals"]])
    np.testing.assert_allclose(member_returns.mean(1), [mean for _, mean in expected["evals"]], rtol=1e-5)
    records = read_metrics(uninterrupted_dir)
    assert [r["train/updates"] for r in records if "train/updates" in r] == [0, 4, 10]
    assert [r["eval/return_member1"] for r in records if "eval/return_member1" in r] == list(member_returns[:, 1])
    with open(os.path.join(uninterrupted_dir, "eval_returns.json")) as f:
        assert json.load(f)["evals"] == expected["member_evals"]
    assert os.path.getsize(os.path.join(uninterrupted_dir, "learning_curve.png")) > 0
    assert sorted(int(s) for s in os.listdir(os.path.join(uninterrupted_dir, "checkpoints")) if s.isdigit()) == [
        1, 2, 3]

    # A run killed after its first chunk's checkpoint: the same directory without the later checkpoints.
    shutil.copytree(uninterrupted_dir, interrupted_dir)
    for chunk in ("2", "3"):
        shutil.rmtree(os.path.join(interrupted_dir, "checkpoints", chunk))
    resumed = mjx_experiment.train_and_evaluate(config, interrupted_dir)
    assert resumed["member_evals"] == expected["member_evals"]
    chex.assert_trees_all_equal(resumed["state"], expected["state"])

    # Member 1 is the 1-seed run of seed 1.
    alone = tiny_config()
    alone.seed = 1
    single = mjx_experiment.train_and_evaluate(alone, str(tmp_path / "seed1"))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[1], b[0], rtol=2e-5, atol=2e-6),
                 expected["state"].agent, single["state"].agent)


@pytest.mark.slow  # two MJX compilations (loop and film env) in a fresh process: 1-3 min on 2 cores
def test_evaluation_films_member_zero_to_mp4_with_egl(tmp_path):
    """MUJOCO_GL is read when MuJoCo is imported, so the run is a fresh process with MUJOCO_GL=egl."""
    overrides = {"env.num_envs": 2, "env.episode_length": 40, "total_env_steps": 20, "iterations_per_chunk": 10,
                 "start_steps": 16, "batch_size": 8, "replay_capacity": 24, "updates_per_iteration": 2,
                 "agent.hidden_sizes": (32, 32), "num_seeds": 2, "video.enabled": True, "video.size": 48}
    command = [sys.executable, "-m", "train.rl_mjx", "--config=configs/rl_mjx.py:cpu", f"--workdir={tmp_path}"] + [
        f"--config.{key}={value}" for key, value in overrides.items()]
    result = subprocess.run(command, cwd=REPO, env=dict(os.environ, MUJOCO_GL="egl"), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    import imageio.v3 as iio

    frames = iio.imread(tmp_path / "videos" / "00000020.mp4")
    assert frames.shape == (11, 48, 48, 3)  # the reset frame and 10 agent steps (40 control steps / 4)
    assert frames.std() > 5 and np.abs(np.diff(frames.astype(float), axis=0)).max() > 10  # a moving scene

"""configs/rl.py: presets, paper settings, validation messages, and the entrypoint's one-line config errors."""

import os
import subprocess
import sys

import pytest

from configs.rl import PAPER_TASKS, get_config, validate
from jaxrep.config_checks import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("preset", ("cpu",) + PAPER_TASKS)
def test_presets_validate(preset):
    config = get_config(preset)
    validate(config)
    assert config.task == (preset if preset != "cpu" else "cartpole-balance")


def test_paper_settings():
    config = get_config("humanoid-stand")
    assert (config.total_env_steps, config.start_steps, config.batch_size, config.replay_capacity) == (
        1_000_000, 25_000, 256, 1_000_000)
    assert (config.updates_per_step, config.update_every, config.env.action_repeat, config.env.episode_length) == (
        1, 1, 1, 1000)
    agent = config.agent
    assert (agent.hidden_sizes, agent.actor_learning_rate, agent.critic_learning_rate) == ((256, 256), 3e-4, 3e-4)
    assert (agent.discount, agent.tau, agent.exploration_noise) == (0.99, 0.005, 0.1)
    assert (config.beer.coef, config.beer.gamma, config.beer.form, config.method) == (1e-3, 0.99, "official", "beer")
    assert (config.eval_every, config.eval_episodes) == (10_000, 10)


def test_unknown_preset_and_task_fail_clearly():
    with pytest.raises(ConfigError, match=r"^preset: .*did you mean 'cheetah-run'"):
        get_config("cheetah_run")
    config = get_config("cpu")
    config.task = "walker-sprint"
    with pytest.raises(ConfigError, match=r"^task: unknown dm-control task 'walker-sprint'; did you mean"):
        validate(config)


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 512, r"^batch_size: 512 is larger than the replay buffer \(replay_capacity=256\)"),
    ("method", "td3", r"^method: must be one of"),
    ("start_steps", 10, r"^start_steps: 10 < batch_size"),
    ("total_env_steps", 0, r"^total_env_steps: must be > 0"),
    ("eval_every", -5, r"^eval_every: must be > 0"),
    ("beer.form", "paper", r"^beer.form: must be one of \('official', 'clean'\)"),
])
def test_bad_fields_are_named(field, value, message):
    config = get_config("cpu")
    config.replay_capacity = 256
    config.batch_size = 128
    section, _, name = field.rpartition(".")
    (config[section] if section else config)[name] = value
    with pytest.raises(ConfigError, match=message):
        validate(config)


def test_entrypoint_exits_with_one_line_before_compiling(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "train.rl", "--config=configs/rl.py:cpu", "--config.batch_size=200000",
         f"--workdir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "MUJOCO_GL": "disable"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "config error: batch_size: 200000 is larger than the replay buffer (replay_capacity=100000)")
    assert not os.listdir(tmp_path)  # nothing built or written

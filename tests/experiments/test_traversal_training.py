"""The traversal entrypoint on a frozen in-repo VAE: both families end to end with a tiny config (strips of
K rows x T + 1 columns, metrics, checkpoints), the generator trained on first use, bitwise resume, sharding
invariance, config errors."""

import json
import os
import sys

import chex
import jax
import numpy as np
import pytest

from configs import traversal as traversal_configs
from jaxrep.config_checks import ConfigError
from jaxrep.experiments import traversal as traversal_experiment
from jaxrep.experiments import vae as vae_experiment
from jaxrep.run.checkpoint import Checkpointer
from jaxrep.run.logging import read_metrics
from tests.helpers import (
    assert_sigterm_saves_and_exits_zero,
    assert_strips,
    assert_trees_equal,
    losses,
    tiny_vae_config,
    with_overrides,
)
from train.cli import run_main

TINY_OVERRIDES = {
    "batch_size": 8, "total_steps": 4, "log_every": 1, "checkpoint_every": 2, "num_devices": 1,
    "traversal.num_potentials": 3, "traversal.num_steps": 3, "traversal.num_start_images": 32,
    "classifier.features": (2, 4, 8), "classifier.hidden": 8, "eval.vp_pairs": 20, "eval.num_strips": 2,
}


@pytest.fixture(scope="module")
def potential_run(tmp_path_factory):
    """The potential family end to end from an empty generator directory: the VAE is made first, as the
    entrypoint's runner does (`train.cli.run_main` with the experiment's prerequisites)."""
    root = tmp_path_factory.mktemp("traversal")
    vae_workdir, workdir = root / "vae", root / "potential"
    state = run_main(traversal_experiment.train_and_evaluate, tiny_config(str(vae_workdir)), str(workdir),
                     prerequisites=traversal_experiment.prerequisites)
    return str(vae_workdir), workdir, state


@pytest.fixture(scope="module")
def vae_workdir(potential_run):
    return potential_run[0]


def tiny_config(vae_workdir, preset="potential", **overrides):
    config = traversal_configs.get_config(preset)
    tiny_vae = tiny_vae_config("plain", total_steps=2)
    return with_overrides(config, {**TINY_OVERRIDES, "vae.workdir": vae_workdir, "vae.config": tiny_vae, **overrides})


def test_potential_traversals_end_to_end(potential_run):
    vae_workdir, workdir, state = potential_run
    generator = json.loads(open(os.path.join(vae_workdir, vae_experiment.FINAL_METRICS)).read())
    assert generator["step"] == 2  # trained first, with the tiny vae.config
    assert int(state.step) == 4
    assert set(state.params) == {"family", "classifier"}  # the generator is frozen: not in the train state
    assert state.params["family"]["wave_speed"].shape == (3,)
    assert Checkpointer(workdir / "checkpoints", save_every=1).all_steps() == [2, 4]
    records = read_metrics(str(workdir))
    assert {"classification", "accuracy", "flow", "ic", "pde", "variation", "velocity_norm"} <= set(records[0])
    final = json.loads((workdir / vae_experiment.FINAL_METRICS).read_text())
    assert final["step"] == 4 and 0.0 <= final["vp"] <= 1.0
    assert final["latent_change"] > 0 and final["image_change"] >= 0
    assert_strips(workdir, 4, 2, num_potentials=3, num_steps=3)  # K rows, T + 1 columns


def test_linear_baseline_resumes_bitwise_and_writes_strips(vae_workdir, tmp_path):
    config = tiny_config(vae_workdir, "linear")
    reference = traversal_experiment.train_and_evaluate(config, str(tmp_path / "uninterrupted"))
    assert set(reference.params["family"]) == {"directions"}
    assert "flow" not in read_metrics(str(tmp_path / "uninterrupted"))[0]  # classifier loss only
    traversal_experiment.train_and_evaluate(tiny_config(vae_workdir, "linear", total_steps=2), str(tmp_path / "resumed"))
    resumed = traversal_experiment.train_and_evaluate(config, str(tmp_path / "resumed"))
    assert int(resumed.step) == 4
    assert_trees_equal(resumed.params, reference.params)
    assert_trees_equal(resumed.opt_state, reference.opt_state)
    assert losses(tmp_path / "resumed") == losses(tmp_path / "uninterrupted")
    assert_strips(tmp_path / "resumed", 4, 2, num_potentials=3, num_steps=3)
    # Unit-speed straight walks: T steps move the latent exactly T (up to float error).
    final = json.loads((tmp_path / "resumed" / vae_experiment.FINAL_METRICS).read_text())
    np.testing.assert_allclose(final["latent_change"], 3.0, rtol=1e-5)


@pytest.mark.slow
def test_potential_traversals_resume_bitwise(vae_workdir, tmp_path):
    reference = traversal_experiment.train_and_evaluate(tiny_config(vae_workdir), str(tmp_path / "uninterrupted"))
    traversal_experiment.train_and_evaluate(tiny_config(vae_workdir, total_steps=2), str(tmp_path / "resumed"))
    resumed = traversal_experiment.train_and_evaluate(tiny_config(vae_workdir), str(tmp_path / "resumed"))
    assert_trees_equal(resumed.params, reference.params)
    assert_trees_equal(resumed.opt_state, reference.opt_state)
    assert losses(tmp_path / "resumed") == losses(tmp_path / "uninterrupted")


@pytest.mark.slow
def test_eight_devices_match_one_device(vae_workdir):
    config = tiny_config(vae_workdir)
    one = traversal_experiment.build_experiment(config, jax.devices()[:1])
    eight = traversal_experiment.build_experiment(config, jax.devices()[:8])
    state_1, state_8 = one.state, eight.state
    for step in range(3):
        state_1, metrics_1 = one.jitted_step(state_1, one.latent_batch(step))
        batch_8 = eight.latent_batch(step)
        assert batch_8["z"].sharding.num_devices == 8
        state_8, metrics_8 = eight.jitted_step(state_8, batch_8)
        np.testing.assert_allclose(metrics_8["loss"], metrics_1["loss"], rtol=1e-4)
    chex.assert_trees_all_close(state_8.params, state_1.params, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_cli_sigterm_saves_and_exits_zero(vae_workdir, tmp_path):
    overrides = {**TINY_OVERRIDES, "vae.workdir": vae_workdir, "total_steps": 100_000, "checkpoint_every": 100_000}
    command = [sys.executable, "-m", "train.traversal", "--config=configs/traversal.py:linear",
               f"--workdir={tmp_path}"] + [f"--config.{key}={value}" for key, value in overrides.items()]
    assert_sigterm_saves_and_exits_zero(command, tmp_path)
    assert not os.path.exists(tmp_path / vae_experiment.FINAL_METRICS)  # preempted runs skip the evaluation


def test_missing_generator_fails_before_compiling(tmp_path, monkeypatch):
    compiles = []
    monkeypatch.setattr(jax.stages.Lowered, "compile", lambda *a, **k: compiles.append(1))
    config = tiny_config(str(tmp_path / "no_vae"), **{"vae.train_if_missing": False})
    with pytest.raises(ConfigError, match="^vae.workdir: no VAE checkpoints in .*python -m train.vae"):
        traversal_experiment.train_and_evaluate(config, str(tmp_path / "run"))
    # A bad generator config fails before the generator trains.
    config = tiny_config(str(tmp_path / "no_vae"), **{"vae.config.method": "regularized"})
    with pytest.raises(ConfigError, match="^vae.config.method:"):
        traversal_experiment.train_and_evaluate(config, str(tmp_path / "run"))
    assert not compiles and not os.path.exists(tmp_path / "no_vae")


@pytest.mark.parametrize("override, field", [
    ({"traversal.family": "warped"}, "traversal.family"),
    ({"traversal.num_potentials": 1}, "traversal.num_potentials"),
    ({"traversal.num_steps": 1}, "traversal.num_steps"),
    ({"traversal.start": "uniform"}, "traversal.start"),
    ({"traversal.operator": "trace"}, "traversal.operator"),
    ({"batch_size": 9, "num_devices": 2}, "batch_size"),
])
def test_bad_config_fails_naming_the_field(vae_workdir, override, field):
    with pytest.raises(ConfigError, match=f"^{field}:"):
        traversal_experiment.build_experiment(tiny_config(vae_workdir, **override))

"""The VAE entrypoint (plain and potential-flow regularised, from scratch): end to end with a tiny config,
bitwise resume, the frozen-VAE loader, and config errors (K > number of factors) naming the field."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from jaxrep import parallel
from jaxrep.config_checks import ConfigError
from jaxrep.experiments import vae as vae_experiment
from jaxrep.run.checkpoint import Checkpointer
from jaxrep.run.logging import read_metrics
from tests.helpers import REPO, assert_strips, assert_trees_equal, losses, strip_grid_shape
from tests.helpers import tiny_vae_config as tiny_config


# A 288-image subgrid (3 shapes x 2 scales x 3 orientations x 4 x 4 positions) and a tiny VAE.
@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("vae_plain")
    state = vae_experiment.train_and_evaluate(tiny_config("plain"), str(workdir))
    return workdir, state


def test_plain_vae_end_to_end_writes_metrics_checkpoints_and_pictures(plain_run):
    workdir, state = plain_run
    assert int(state.step) == 4
    assert Checkpointer(workdir / "checkpoints", save_every=1).all_steps() == [2, 4]
    records = read_metrics(str(workdir))
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert all(np.isfinite(r["elbo"]) for r in records if "elbo" in r)
    final = json.loads((workdir / vae_experiment.FINAL_METRICS).read_text())
    assert final["step"] == 4 and set(final) >= {"mig", "dci_disentanglement", "dci_completeness", "nll"}
    assert 0.0 <= final["mig"] <= 1.0 and 0.0 <= final["dci_disentanglement"] <= 1.0
    # Bernoulli NLL of a 64 x 64 binary image: positive and at most 4096 log 2 plus the KL at init.
    assert 0.0 < final["nll"] < 4096 * np.log(2.0) + 100
    assert np.asarray(Image.open(workdir / "reconstructions.png")).shape == strip_grid_shape(2, 8)
    assert json.loads((workdir / "config.json").read_text())["method"] == "plain"


def test_load_vae_returns_the_trained_weights(plain_run):
    workdir, state = plain_run
    mesh = parallel.make_mesh(jax.devices()[:1])
    vae, params, config = vae_experiment.load_vae(str(workdir), mesh)
    assert vae.latent_dim == 3 and config.method == "plain"
    assert_trees_equal(params, state.ema_params["vae"])
    with pytest.raises(ConfigError, match="^vae.workdir: no VAE run"):
        vae_experiment.load_vae(str(workdir / "missing"), mesh)


def test_plain_vae_resumes_bitwise(plain_run, tmp_path):
    workdir, reference = plain_run  # 4 uninterrupted steps
    vae_experiment.train_and_evaluate(tiny_config("plain", total_steps=2), str(tmp_path))
    resumed = vae_experiment.train_and_evaluate(tiny_config("plain"), str(tmp_path))
    assert int(resumed.step) == 4
    assert_trees_equal(resumed.params, reference.params)
    assert_trees_equal(resumed.opt_state, reference.opt_state)
    assert losses(tmp_path) == losses(workdir)


def test_regularized_vae_end_to_end_writes_strips_and_metrics(tmp_path):
    config = tiny_config("regularized")
    state = vae_experiment.train_and_evaluate(config, str(tmp_path))
    assert int(state.step) == 4 and set(state.params) == {"vae", "potentials"}
    assert Checkpointer(tmp_path / "checkpoints", save_every=1).all_steps() == [2, 4]
    record = read_metrics(str(tmp_path))[0]
    assert {"elbo", "shifted_elbo", "flow", "ic", "pde", "variation", "matching", "velocity_norm"} <= set(record)
    final = json.loads((tmp_path / vae_experiment.FINAL_METRICS).read_text())
    assert 0.0 <= final["vp"] <= 1.0 and 0.0 <= final["mig"] <= 1.0 and np.isfinite(final["nll"])
    assert_strips(tmp_path, 4, 2, config.regularizer.num_potentials, config.regularizer.num_steps)


@pytest.mark.slow
def test_regularized_vae_resumes_bitwise(tmp_path):
    reference = vae_experiment.train_and_evaluate(tiny_config("regularized"), str(tmp_path / "uninterrupted"))
    vae_experiment.train_and_evaluate(tiny_config("regularized", total_steps=2), str(tmp_path / "resumed"))
    resumed = vae_experiment.train_and_evaluate(tiny_config("regularized"), str(tmp_path / "resumed"))
    assert_trees_equal(resumed.params, reference.params)
    assert_trees_equal(resumed.opt_state, reference.opt_state)
    assert losses(tmp_path / "resumed") == losses(tmp_path / "uninterrupted")


@pytest.mark.parametrize("override", [
    {"regularizer.num_potentials": 6},
    {"data.sequence_factors": ("pos_x", "pos_y")},
])
def test_more_potentials_than_factors_fails_naming_the_field(override, monkeypatch):
    compiles = []
    monkeypatch.setattr(jax.stages.Lowered, "compile", lambda *a, **k: compiles.append(1))
    with pytest.raises(ConfigError, match=r"^regularizer.num_potentials: \d potentials but only \d factors"):
        vae_experiment.build_experiment(tiny_config("regularized", **override))
    assert not compiles


@pytest.mark.parametrize("override, field", [
    ({"regularizer.num_potentials": 3}, "regularizer.num_potentials"),
    ({"data.sequence_factors": ("pos_x", "colour")}, "data.sequence_factors"),
    ({"batch_size": 7, "num_devices": 2}, "batch_size"),
    ({"model.channels": (4, 4, 4, 4, 4, 4, 4)}, "model.channels"),
    ({"method": "beta"}, "method"),
])
def test_bad_config_fails_naming_the_field(override, field):
    with pytest.raises(ConfigError, match=f"^{field}:"):
        vae_experiment.build_experiment(tiny_config("regularized", **override))


def test_cli_one_line_error_for_too_many_potentials(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "train.vae", "--config=configs/vae.py:regularized", f"--workdir={tmp_path}",
         "--config.regularizer.num_potentials=8"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(
        "config error: regularizer.num_potentials: 8 potentials but only 5 factors")
    assert not (tmp_path / "checkpoints").exists()
    unknown = subprocess.run([sys.executable, "-m", "train.vae", "--config=configs/vae.py:huge",
                              f"--workdir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert unknown.returncode != 0
    assert unknown.stderr.strip().splitlines()[-1].startswith("config error: preset: unknown preset 'huge'")


def test_importing_the_entrypoints_defines_no_flags():
    script = ("import train.rl, train.traversal, train.vae; from absl import flags; "
              "print(sorted(set(flags.FLAGS) & {'config', 'workdir'}))")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "MUJOCO_GL": "disable"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"

"""train.evaluate end to end on a tiny diffusion work directory: ADM sample file layout, results JSON, grid PNG,
reference-cache reuse, checkpoint choice, and device-count independence of the samples (API and CLI)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from configs import eval_net as eval_net_configs
from configs import evaluate as evaluate_configs
from jaxrep.config_checks import ConfigError
from jaxrep.experiments import diffusion as diffusion_experiment
from jaxrep.experiments import eval_net as eval_net_experiment
from jaxrep.experiments import evaluate as evaluate_experiment
from tests.helpers import REPO, with_overrides
from tests.helpers import tiny_diffusion_config as tiny_config

NUM_SAMPLES = 12  # one full batch of 8 (split over the 8 test devices) and one padded batch


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("diffusion")
    diffusion_experiment.train_and_evaluate(tiny_config(), str(directory))  # checkpoints at steps 3 and 6
    return directory


@pytest.fixture(scope="module")
def eval_net_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("eval_net") / "net"
    config = eval_net_configs.get_config("shapes32")
    config.update(total_steps=3, batch_size=16, log_every=1)
    config.model.update(widths=(4, 8), feature_dim=16)
    eval_net_experiment.train_eval_net(config, str(directory), show_progress=False)
    return directory


def eval_overrides(eval_net_dir, cache_dir):
    return {"num_samples": NUM_SAMPLES, "batch_size": 8, "sample.num_steps": 2, "features.batch_size": 8,
            "features.eval_net_path": str(eval_net_dir), "reference.num_images": 40,
            "reference.cache_dir": str(cache_dir)}


def eval_config(**overrides):
    return with_overrides(evaluate_configs.get_config("cpu"), overrides)


def test_evaluate_writes_adm_npz_results_and_grid_and_reuses_the_reference_cache(workdir, eval_net_dir, tmp_path):
    overrides = eval_overrides(eval_net_dir, tmp_path / "cache")
    results = evaluate_experiment.evaluate(eval_config(**overrides), str(workdir), show_progress=False)

    output_dir = os.path.dirname(results["samples_npz"])
    assert os.path.basename(output_dir) == "step0000006_ode-heun2_cfg1.5_eval_net_n12_seed0"
    assert os.path.basename(results["samples_npz"]) == "samples_12x32x32x3.npz"
    with np.load(results["samples_npz"], allow_pickle=False) as samples:
        assert sorted(samples.files) == ["arr_0", "arr_1"]
        images, labels = samples["arr_0"], samples["arr_1"]
    assert images.dtype == np.uint8 and images.shape == (NUM_SAMPLES, 32, 32, 3)  # NHWC
    np.testing.assert_array_equal(labels, np.arange(NUM_SAMPLES) % 3)
    assert len(np.unique(images.reshape(NUM_SAMPLES, -1), axis=0)) == NUM_SAMPLES  # every batch its own noise

    with open(os.path.join(output_dir, "results.json")) as file:
        written = json.load(file)
    assert written == json.loads(json.dumps(results))
    assert np.isfinite(written["fd"]) and written["fd"] > 0
    for name in ("precision", "recall", "coverage"):
        assert 0.0 <= written[name] <= 1.0
    assert written["density"] >= 0.0
    assert written["step"] == 6 and written["weights"] == "ema" and written["num_samples"] == NUM_SAMPLES
    assert written["num_devices"] == 8
    assert written["sample"]["num_steps"] == 2 and written["sample"]["ode_method"] == "heun"  # override + run's own
    assert written["sample"]["cfg_scale"] == 1.5
    assert written["feature_extractor"]["kind"] == "eval_net" and written["feature_extractor"]["dim"] == 16
    assert written["reference"]["num_images"] == 40 and written["reference"]["cache_hit"] is False
    assert written["prdc_num_real"] == 40 and written["prdc_num_fake"] == NUM_SAMPLES
    assert set(written["seconds"]) == {"setup", "sampling", "features", "reference", "metrics", "total"}

    grid = Image.open(written["grid_png"])
    assert grid.size == (2 * (4 * 33 + 1), 2 * (3 * 33 + 1))  # 12 images, 4 columns, 1 px gaps, upscaled 2x

    # Again through the CLI, on one device, naming the checkpoint: the reference statistics come from the cache
    # (file untouched) and the samples equal the 8-device ones (the noise of batch b is fold_in(seed, b)).
    cache_mtime = os.path.getmtime(written["reference"]["cache"])
    cli_output = tmp_path / "cli"
    command = [sys.executable, "-m", "train.evaluate", "--config=configs/evaluate.py:cpu", f"--workdir={workdir}",
               "--config.step=6", "--config.num_devices=1", f"--config.output_dir={cli_output}"]
    command += [f"--config.{key}={value}" for key, value in overrides.items()]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "FD" in completed.stdout and "precision" in completed.stdout and "recall" in completed.stdout
    assert "train.evaluate ended after " in completed.stdout and f"  work directory: {workdir}" in completed.stdout
    with open(cli_output / "results.json") as file:
        again = json.load(file)
    assert again["reference"]["cache_hit"] is True and again["reference"]["cache"] == written["reference"]["cache"]
    assert os.path.getmtime(written["reference"]["cache"]) == cache_mtime
    assert again["num_devices"] == 1
    with np.load(again["samples_npz"]) as samples:
        difference = np.abs(samples["arr_0"].astype(int) - images.astype(int))
    assert difference.max() <= 1  # the same samples up to float rounding across device counts
    assert again["fd"] == pytest.approx(written["fd"], rel=1e-2, abs=1e-2)


def test_evaluate_names_missing_checkpoints_and_bad_settings(workdir, eval_net_dir, tmp_path):
    overrides = eval_overrides(eval_net_dir, tmp_path / "cache")
    with pytest.raises(ValueError, match=r"available: \[3, 6\]"):
        evaluate_experiment.evaluate(eval_config(**overrides, step=4), str(workdir), show_progress=False)
    with pytest.raises(FileNotFoundError, match="config.json"):
        evaluate_experiment.evaluate(eval_config(**overrides), str(tmp_path), show_progress=False)
    with pytest.raises(ConfigError, match="batch_size"):
        evaluate_experiment.evaluate(eval_config(**dict(overrides, batch_size=6)), str(workdir), show_progress=False)
    with pytest.raises(ConfigError, match="features.inception_path"):
        evaluate_experiment.evaluate(eval_config(**overrides, **{"features.extractor": "inception"}), str(workdir))

"""Runs kept in a Cloud Storage bucket (`--workdir=gs://...`), against a local fake server (`tests/fake_gcs.py`):
the diffusion entrypoint trained, killed, resumed bitwise and evaluated through the command line with every file
in the bucket; the work-directory lock's conditional create; a damaged checkpoint set aside in the bucket; and
the one-line refusals of storage that cannot be used."""

import json
import signal
import subprocess
import sys

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import diffusion as diffusion_configs
from configs import eval_net as eval_net_configs
from jaxrep import files
from jaxrep.config_checks import ConfigError
from jaxrep.experiments import diffusion as diffusion_experiment
from jaxrep.experiments import eval_net as eval_net_experiment
from jaxrep.run.checkpoint import Checkpointer, abstract_like
from jaxrep.run.logging import read_metrics
from jaxrep.run.workdir_lock import LOCK_FILE, WorkdirLockedError, workdir_lock
from tests import fake_gcs
from tests.helpers import REPO, assert_trees_equal, diffusion_cli_args, tiny_diffusion_config
from train.cli import check_storage


@pytest.fixture(scope="module")
def bucket():
    with fake_gcs.bucket() as url:
        yield url


def run_command(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_a_run_in_a_bucket_is_killed_resumes_bitwise_and_evaluates(bucket, tmp_path):
    workdir = f"{bucket}/sit"
    reference = diffusion_experiment.train_and_evaluate(tiny_diffusion_config(), str(tmp_path / "local"))
    script = ("import sys; from tests.helpers import train_diffusion_until_killed as run; "
              "run(sys.argv[1], step=4, saved=3)")
    killed = run_command([sys.executable, "-c", script, workdir])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert files.path(f"{workdir}/{LOCK_FILE}").exists()  # left by the killed job: stale, taken over below
    assert Checkpointer(f"{workdir}/checkpoints", save_every=1).latest_step() == 3

    resumed = run_command(diffusion_cli_args(workdir))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "restored step 3" in resumed.stdout
    assert f"  checkpoints: {workdir}/checkpoints (latest step 6)" in resumed.stdout
    assert not files.path(f"{workdir}/{LOCK_FILE}").exists()
    experiment = diffusion_experiment.build_experiment(tiny_diffusion_config())
    state, _ = Checkpointer(f"{workdir}/checkpoints", save_every=1).restore(abstract_like(experiment.state))
    assert int(state.step) == 6
    assert_trees_equal(state.params, reference.params)
    assert_trees_equal(state.ema_params, reference.ema_params)
    assert_trees_equal(state.opt_state, reference.opt_state)
    local_losses = {r["step"]: r["loss"] for r in read_metrics(str(tmp_path / "local"))}
    bucket_losses = {r["step"]: r["loss"] for r in read_metrics(workdir)}  # steps 1-3 logged before the kill
    assert all(bucket_losses[step] == local_losses[step] for step in range(1, 7))
    assert json.loads(files.path(f"{workdir}/config.json").read_text())["total_steps"] == 6
    assert files.path(f"{workdir}/samples_0000006.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(files.path(f"{workdir}/tensorboard").iterdir())

    # The evaluation network's weights and the reference-statistics cache in the bucket too.
    eval_net = f"{bucket}/eval_net"
    config = eval_net_configs.get_config("shapes32")
    config.update(total_steps=3, batch_size=16, log_every=1)
    config.model.update(widths=(4, 8), feature_dim=16)
    eval_net_experiment.train_eval_net(config, eval_net, show_progress=False)
    evaluate = run_command([sys.executable, "-m", "train.evaluate", "--config=configs/evaluate.py:cpu",
                            f"--workdir={workdir}", "--config.num_samples=8", "--config.batch_size=8",
                            "--config.sample.num_steps=2", "--config.features.batch_size=8",
                            f"--config.features.eval_net_path={eval_net}", "--config.reference.num_images=16",
                            f"--config.reference.cache_dir={bucket}/cache"])
    assert evaluate.returncode == 0, evaluate.stderr[-2000:]
    [output] = [entry for entry in files.path(f"{workdir}/eval").iterdir()]
    results = json.loads((output / "results.json").read_text())
    assert np.isfinite(results["fd"]) and results["step"] == 6 and results["workdir"] == workdir
    assert results["samples_npz"] == f"{output}/samples_8x32x32x3.npz"
    with files.path(results["samples_npz"]).open("rb") as file, np.load(file, allow_pickle=False) as samples:
        assert samples["arr_0"].shape == (8, 32, 32, 3) and samples["arr_0"].dtype == np.uint8
    assert not (output / "shares").exists()
    assert [entry.name.startswith("reference_eval_net_") for entry in files.path(f"{bucket}/cache").iterdir()] == [True]


def test_configs_accept_data_and_weights_named_in_the_bucket(bucket):
    """The pod recipe of docs/imagenet.md names its data and weights by gs:// URL: the configs check them there."""
    files.path(f"{bucket}/latents/manifest.json").write_text("{}")
    files.path(f"{bucket}/weights/dinov2.safetensors").write_bytes(b"weights")
    config = tiny_diffusion_config(**{"data.source": "latent_records", "data.path": f"{bucket}/latents",
                                      "align.method": "repa", "align.depth": 1, "align.encoder.source": "dinov2",
                                      "align.encoder.path": f"{bucket}/weights/dinov2.safetensors"})
    diffusion_configs.validate(config, num_devices=1)
    config.data.path = f"{bucket}/elsewhere"
    with pytest.raises(ConfigError, match=f"^data.path: .*no manifest.json in '{bucket}/elsewhere'"):
        diffusion_configs.validate(config, num_devices=1)


def test_weight_files_in_the_bucket_are_read_through_a_local_copy(bucket, tmp_path, monkeypatch):
    from safetensors.numpy import save_file

    from jaxrep.weights import hub
    from jaxrep.weights.autoencoder_kl import abstract_autoencoder_kl
    from jaxrep.weights.convert import MissingWeightsError, load_state_dict

    monkeypatch.setattr(files, "CACHE_DIR", str(tmp_path / "cache"))
    weights = {"encoder.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "step": np.array([7], np.int64)}
    save_file(weights, str(tmp_path / "w.safetensors"))
    files.path(f"{bucket}/vae/diffusion_pytorch_model.safetensors").write_bytes((tmp_path / "w.safetensors").read_bytes())
    files.path(f"{bucket}/vae/config.json").write_text("{}")
    loaded = load_state_dict(f"{bucket}/vae/diffusion_pytorch_model.safetensors")
    assert loaded.keys() == weights.keys() and all(np.array_equal(loaded[k], weights[k]) for k in weights)
    folder = hub.resolve(f"{bucket}/vae", field="vae.path", files=())
    assert folder == str(tmp_path / "cache" / "gs" / "runs" / "vae")
    assert sorted(p.name for p in (tmp_path / "cache" / "gs" / "runs" / "vae").iterdir()) == [
        "config.json", "diffusion_pytorch_model.safetensors"]
    with pytest.raises(MissingWeightsError, match=f"^vae.path: nothing at '{bucket}/missing'"):
        hub.resolve(f"{bucket}/missing", field="vae.path", files=())
    # The ahead-of-time compile's VAE shapes come from the bucket folder's config.json (diffusers' defaults for
    # "{}": one 64-channel block), not SD-VAE's four blocks.
    vae, _ = abstract_autoencoder_kl(f"{bucket}/vae", latent_size=4)
    assert vae.block_out_channels == (64,)


def test_the_lock_in_a_bucket_is_a_conditional_create(bucket):
    workdir = f"{bucket}/locked"
    with workdir_lock(workdir):
        holder = json.loads(files.path(f"{workdir}/{LOCK_FILE}").read_text())
        assert holder["host"] and holder["pid"]
        with pytest.raises(WorkdirLockedError, match=f"held by pid {holder['pid']}"):
            with workdir_lock(workdir):
                pass
    assert not files.path(f"{workdir}/{LOCK_FILE}").exists()
    files.path(f"{workdir}/{LOCK_FILE}").write_text(json.dumps({"host": "another-host", "pid": 1, "since": "x"}))
    with pytest.raises(WorkdirLockedError, match=f"on another-host .* delete {workdir}/{LOCK_FILE}"):
        with workdir_lock(workdir):
            pass
    assert "another-host" in files.path(f"{workdir}/{LOCK_FILE}").read_text()  # a refusal leaves it alone


def test_a_damaged_checkpoint_in_a_bucket_is_set_aside_and_the_previous_one_restored(bucket, capsys):
    directory = f"{bucket}/damaged/checkpoints"
    checkpointer = Checkpointer(directory, save_every=1, keep=5)
    for step in (1, 2):
        checkpointer.save(step, {"w": jnp.full((4096,), float(step))}, {"step": step})
    checkpointer.close()
    data = max((file for name, file in files.files_under(f"{directory}/2").items() if name.startswith("state/d/")),
               key=lambda file: file.stat().length)
    data.write_bytes(data.read_bytes()[:-1] + b"\x00")  # one byte of the array data changed in the bucket
    state, extra = Checkpointer(directory, save_every=1).restore({"w": jnp.zeros((4096,))})
    assert extra == {"step": 1} and float(state["w"][0]) == 1.0
    assert "checkpoint 2 in" in capsys.readouterr().err
    names = sorted(entry.name for entry in files.path(directory).iterdir())
    assert "2" not in names and any(name.startswith("damaged-2-") for name in names)


def test_storage_that_cannot_hold_a_run_is_refused_in_one_line(tmp_path):
    unknown = run_command([sys.executable, "-m", "train.diffusion", "--workdir=zzfs://bucket/run"])
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == ["config error: workdir: 'zzfs://bucket/run': zzfs:// is not a "
                                                   "storage jaxrep can use (local paths, gs://, s3://, az://)"]
    with pytest.raises(ConfigError, match=r"^data.path: 's3://b/x' needs a storage client that is not installed"):
        check_storage(ml_collections.ConfigDict({"data": {"path": "s3://b/x"}}), str(tmp_path))
    with pytest.raises(ConfigError, match=r"^workdir: 's3://bucket/run': s3:// offers no exclusive create"):
        with workdir_lock("s3://bucket/run"):
            pass

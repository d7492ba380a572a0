"""Reliability of SiT training: exact resume after a kill, SIGTERM saves, non-finite stops, config errors,
multi-device and shard_map equivalence, no recompilation, topology-agnostic restore."""

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from configs import diffusion as diffusion_configs
from jaxrep import parallel
from jaxrep.config_checks import ConfigError
from jaxrep.experiments import diffusion as diffusion_experiment
from jaxrep.run.checkpoint import Checkpointer, abstract_like
from jaxrep.run.logging import read_metrics
from jaxrep.training import current_learning_rate
from tests.helpers import (
    REPO,
    assert_sigterm_saves_and_exits_zero,
    assert_trees_equal,
    diffusion_cli_args,
    first_batches,
    run_steps,
    tiny_diffusion_config,
)

tiny_config, cli_args = tiny_diffusion_config, diffusion_cli_args


def run_cli(workdir, **overrides):
    return subprocess.run(cli_args(workdir, **overrides), cwd=REPO, capture_output=True, text=True, timeout=600)


def restore_latest(workdir, config):
    experiment = diffusion_experiment.build_experiment(config)
    state, extra = Checkpointer(os.path.join(workdir, "checkpoints"), save_every=1).restore(
        abstract_like(experiment.state))
    return state, extra


def test_killed_run_resumes_bitwise(tmp_path):
    reference = diffusion_experiment.train_and_evaluate(tiny_config(), str(tmp_path / "uninterrupted"))
    script = ("import sys; from tests.helpers import train_diffusion_until_killed as run; "
              "run(sys.argv[1], step=4, saved=3)")
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path / "killed")],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert Checkpointer(tmp_path / "killed" / "checkpoints", save_every=1).latest_step() == 3
    resumed = run_cli(tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "restored step 3" in resumed.stdout
    # A redirected log: plain progress lines, no carriage-return redraws; then the run's summary.
    assert "\r" not in resumed.stderr and "train: 6/6 steps (100 %)" in resumed.stderr
    summary = resumed.stdout[resumed.stdout.index("train.diffusion ended after "):].splitlines()
    workdir = tmp_path / "killed"
    assert f"  checkpoints: {workdir / 'checkpoints'} (latest step 6)" in summary
    assert any(line.startswith("  written: ") and "samples_0000006.png" in line for line in summary)
    assert summary[-1] == f"  next: python -m train.evaluate --config=configs/evaluate.py:cpu --workdir={workdir}"
    state, _ = restore_latest(str(tmp_path / "killed"), tiny_config())
    assert int(state.step) == 6
    assert_trees_equal(state.params, reference.params)
    assert_trees_equal(state.ema_params, reference.ema_params)
    assert_trees_equal(state.opt_state, reference.opt_state)
    losses = {r["step"]: r["loss"] for r in read_metrics(str(tmp_path / "uninterrupted"))}
    resumed_losses = {r["step"]: r["loss"] for r in read_metrics(str(tmp_path / "killed"))}
    assert all(resumed_losses[s] == losses[s] for s in range(1, 7))
    assert os.path.exists(tmp_path / "killed" / "samples_0000006.png")


def test_sigterm_saves_and_exits_zero(tmp_path):
    assert_sigterm_saves_and_exits_zero(cli_args(tmp_path, total_steps=100_000, checkpoint_every=100_000), tmp_path)


def test_sigterm_before_the_first_step_saves_and_exits_zero(tmp_path):
    """A notice while the run is still building or compiling (config.json is written just before compiling)."""
    process = subprocess.Popen(cli_args(tmp_path, total_steps=100_000, checkpoint_every=100_000), cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (tmp_path / "config.json").exists():
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-2000:]
    assert re.search(r"SIGTERM( before training)?: saved step \d+", stdout)
    assert Checkpointer(tmp_path / "checkpoints", save_every=1).latest_step() is not None


def test_restored_state_keeps_ema_optimizer_and_schedule_position(tmp_path):
    # Stop inside the warmup so the learning-rate schedule position matters.
    config = tiny_config(total_steps=3, **{"optim.warmup_steps": 10})
    final = diffusion_experiment.train_and_evaluate(config, str(tmp_path))
    state, extra = restore_latest(str(tmp_path), config)
    assert int(state.step) == 3 and extra["data"]
    assert_trees_equal(state.ema_params, final.ema_params)
    assert_trees_equal(state.opt_state, final.opt_state)
    np.testing.assert_allclose(current_learning_rate(state.opt_state), 2 / 10 * config.optim.learning_rate, rtol=1e-6)
    assert not np.array_equal(state.ema_params["sit"]["final_layer"]["linear"]["kernel"],
                              state.params["sit"]["final_layer"]["linear"]["kernel"])


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    images = np.random.default_rng(0).uniform(-1, 1, (16, 16, 16, 3)).astype(np.float32)
    path = str(tmp_path / "images.npy")
    np.save(path, images)
    config = tiny_config(total_steps=3, checkpoint_every=3, **{"data.source": "arrays", "data.path": path})
    good = diffusion_experiment.train_and_evaluate(config, str(tmp_path / "run"))
    np.save(path, np.full_like(images, np.nan))
    with pytest.raises(diffusion_experiment.NonFiniteLossError, match="last good checkpoint"):
        diffusion_experiment.train_and_evaluate(tiny_config(total_steps=6, checkpoint_every=1,
                                                       **{"data.source": "arrays", "data.path": path}),
                                           str(tmp_path / "run"))
    checkpointer = Checkpointer(tmp_path / "run" / "checkpoints", save_every=1)
    assert checkpointer.all_steps() == [3]
    state, _ = restore_latest(str(tmp_path / "run"), config)
    assert_trees_equal(state.params, good.params)


def test_an_overflowing_update_never_reaches_a_checkpoint(tmp_path):
    # From a good checkpoint, a rate of 1e39 keeps loss and gradient finite but overflows the parameters: the step
    # must be refused (state untouched) and the run must stop without saving.
    workdir = str(tmp_path / "run")
    good = diffusion_experiment.train_and_evaluate(tiny_config(total_steps=3, checkpoint_every=3), workdir)
    with pytest.raises(diffusion_experiment.NonFiniteLossError, match="updated parameters"):
        diffusion_experiment.train_and_evaluate(
            tiny_config(total_steps=6, checkpoint_every=1, **{"optim.learning_rate": 1e39}), workdir)
    assert Checkpointer(tmp_path / "run" / "checkpoints", save_every=1).all_steps() == [3]
    state, _ = restore_latest(workdir, tiny_config())
    assert_trees_equal(state.params, good.params)


@pytest.mark.parametrize("override, field", [
    ({"optim.eps": 0.0}, "optim.eps"),
    ({"optim.b2": 1.0}, "optim.b1"),
    ({"batch_size": 7, "num_devices": 2}, "batch_size"),
    ({"model.patch_size": 5}, "model.patch_size"),
    ({"optim.learning_rate": -1.0}, "optim.learning_rate"),
    ({"model.hidden_size": 30}, "model.hidden_size"),
    ({"sample.sampler": "ddim"}, "sample.sampler"),
])
def test_bad_config_fails_before_compiling_naming_the_field(override, field, monkeypatch):
    compiles = []
    monkeypatch.setattr(jax.stages.Lowered, "compile", lambda *a, **k: compiles.append(1))
    with pytest.raises(ConfigError, match=f"^{field}:"):
        diffusion_experiment.build_experiment(tiny_config(**override))
    assert not compiles


def test_unknown_preset_and_cli_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="^preset: unknown preset 'huge'"):
        diffusion_configs.get_config("huge")
    result = run_cli(tmp_path, **{"optim.learning_rate": -0.5})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("config error: optim.learning_rate: must be > 0")
    assert not (tmp_path / "checkpoints").exists()
    result = run_cli(tmp_path, **{"model.nope": 1})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["config error: --config.model.nope: no such field in the config"]


def test_a_truncated_or_foreign_weight_file_ends_in_one_line_naming_it(tmp_path):
    truncated = tmp_path / "dinov2.safetensors"
    truncated.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": ")  # header cut short
    result = run_cli(tmp_path / "run", **{"align.method": "repa", "align.encoder.source": "dinov2",
                                           "align.encoder.path": str(truncated), "align.encoder.preset": "S/14",
                                           "align.depth": 1})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert lines[-1].startswith(f"error: align.encoder.path: '{truncated}' is not a DINOv2 S/14 file: {truncated}: "
                                "cannot read the weights (truncated or corrupt?)")
    (tmp_path / "not_an_encoder").mkdir()  # a folder of other files: no encoder stage trains over them
    (tmp_path / "not_an_encoder" / "notes.txt").write_text("not an encoder")
    result = run_cli(tmp_path / "run", **{"align.method": "repa", "align.encoder.path": tmp_path / "not_an_encoder",
                                           "align.depth": 1})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: align.encoder.path: ")


def test_a_second_job_on_a_held_work_directory_is_refused_in_one_line(tmp_path):
    (tmp_path / "LOCK").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": "now"}))
    result = run_cli(tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: workdir: '{tmp_path}' is in use (held by pid "
                                                             f"{os.getpid()}")
    assert not (tmp_path / "checkpoints").exists() and (tmp_path / "LOCK").exists()


def test_eight_devices_match_one_device():
    # A large Adam epsilon keeps Adam from amplifying float noise in near-zero gradients into O(lr) updates.
    config = tiny_config(batch_size=16, **{"optim.eps": 1e-3})
    one = diffusion_experiment.build_experiment(config, jax.devices()[:1])
    eight = diffusion_experiment.build_experiment(config, jax.devices()[:8])
    assert len(jax.devices()) >= 8
    state_1, losses_1 = run_steps(one.jitted_step, one.state, first_batches(config, one.mesh, 3))
    batches_8 = first_batches(config, eight.mesh, 3)
    assert batches_8[0]["image"].sharding.num_devices == 8
    state_8, losses_8 = run_steps(eight.jitted_step, eight.state, batches_8)
    np.testing.assert_allclose(losses_8, losses_1, rtol=1e-4)
    chex.assert_trees_all_close(state_8.params, state_1.params, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # the pmap-style forms of the step; the jit form on 8 devices runs in the default suite
def test_shard_map_and_pmap_forms_of_the_step_match_one_device():
    config = tiny_config(batch_size=16, **{"optim.eps": 1e-3})
    one = diffusion_experiment.build_experiment(config, jax.devices()[:1])
    state_1, losses_1 = run_steps(one.jitted_step, one.state, first_batches(config, one.mesh, 3))
    fresh = diffusion_experiment.build_experiment(config, jax.devices()[:8])
    batches_8 = first_batches(config, fresh.mesh, 3)
    # The same step, per device under shard_map with an axis name (the pmap form), on global arrays.
    mapped_step = diffusion_experiment.make_train_step_for_axis(fresh, parallel.DATA_AXIS)
    shard_mapped = jax.jit(jax.shard_map(mapped_step, mesh=fresh.mesh, in_specs=(P(), P(parallel.DATA_AXIS)),
                                         out_specs=(P(), P()), check_vma=False))
    state_s, losses_s = run_steps(shard_mapped, fresh.state, batches_8)
    np.testing.assert_allclose(losses_s, losses_1, rtol=1e-4)
    chex.assert_trees_all_close(state_s.params, state_1.params, rtol=1e-4, atol=1e-5)

    # And under jax.pmap (maintenance mode, but still the API some users call).
    devices = jax.devices()[:8]
    host_batches = [jax.tree.map(lambda x: np.asarray(x).reshape(8, -1, *x.shape[1:]), b) for b in batches_8]
    replicated = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (8, *x.shape)), fresh.state)
    pmapped = jax.pmap(mapped_step, axis_name=parallel.DATA_AXIS, devices=devices)
    state_p, losses_p = replicated, []
    for batch in host_batches:
        state_p, metrics = pmapped(state_p, batch)
        losses_p.append(float(metrics["loss"][0]))
    np.testing.assert_allclose(losses_p, losses_1, rtol=1e-4)


def test_second_call_does_not_recompile():
    config = tiny_config()
    experiment = diffusion_experiment.build_experiment(config)
    batches = first_batches(config, experiment.mesh, 3)
    state, _ = experiment.jitted_step(experiment.state, batches[0])
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    jax_logger = logging.getLogger("jax")
    jax_logger.addHandler(handler)
    try:
        with jax.log_compiles():
            for batch in batches[1:]:
                state, metrics = experiment.jitted_step(state, batch)
            jax.block_until_ready(metrics)
    finally:
        jax_logger.removeHandler(handler)
    compiles = [r for r in records if "Compiling" in r.getMessage() or "Finished XLA compilation" in r.getMessage()]
    assert not compiles, [r.getMessage() for r in compiles]


@pytest.mark.slow  # restoring into another device count: tests/experiments/test_fsdp.py runs in the default suite
def test_checkpoint_from_eight_devices_restores_on_one_and_the_next_step_agrees(tmp_path):
    # One run on 8 devices writes its checkpoint; a 1-device experiment restores it against its own mesh and takes
    # the next step on the same batch as the 8-device state: equal parameters, equal next loss.
    config_8 = tiny_config(total_steps=2, checkpoint_every=2, num_devices=8, batch_size=16)
    final_8 = diffusion_experiment.train_and_evaluate(config_8, str(tmp_path))
    one = diffusion_experiment.build_experiment(tiny_config(num_devices=1, batch_size=16))
    state, _ = Checkpointer(tmp_path / "checkpoints", save_every=1).restore(abstract_like(one.state))
    assert all(len(leaf.sharding.device_set) == 1 for leaf in jax.tree.leaves(state.params))
    assert_trees_equal(state.params, final_8.params)
    eight = diffusion_experiment.build_experiment(config_8)
    batch = first_batches(config_8, one.mesh, 1)[0]
    _, loss_1 = run_steps(one.jitted_step, state, [batch])
    _, loss_8 = run_steps(eight.jitted_step, final_8, [jax.device_put(batch, parallel.batch_sharding(eight.mesh))])
    np.testing.assert_allclose(loss_1, loss_8, rtol=1e-5)


def test_resuming_with_a_different_model_fails_clearly(tmp_path):
    from jaxrep.run.checkpoint import CheckpointMismatchError

    diffusion_experiment.train_and_evaluate(tiny_config(total_steps=1), str(tmp_path))
    with pytest.raises(CheckpointMismatchError, match="does not fit the current model/config"):
        diffusion_experiment.train_and_evaluate(tiny_config(total_steps=2, **{"model.hidden_size": 64}), str(tmp_path))

"""Multi-process runs through the command line, exactly as the README's "Scaling out" shows them: two local
processes of `python -m train.diffusion ... --config.distributed.*` (2 fake CPU devices each) train to the same
result as one process on 4 devices, a SIGTERM to one of them saves the same step on both and the rerun resumes
bitwise, a cluster that cannot form ends in one line naming the field, and the single-process entrypoints refuse
`--config.distributed.*` in one line."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import diffusion as diffusion_configs
from configs import evaluate as evaluate_configs
from configs import prepare_latents as prepare_configs
from jaxrep import parallel
from jaxrep.data import make_dataset, make_iterator
from jaxrep.experiments import diffusion as diffusion_experiment
from jaxrep.run.checkpoint import Checkpointer, abstract_like
from jaxrep.run.logging import read_metrics
from tests.helpers import (
    REPO,
    assert_trees_equal,
    diffusion_cli_args,
    distributed_flags,
    finish_processes,
    free_port,
    start_processes,
    tiny_diffusion_config,
)
from train.cli import SCALES_OUT

SINGLE_PROCESS_ENTRYPOINTS = ("train.rl", "train.rl_mjx", "train.rl_grid", "train.vae", "train.traversal",
                              "train.encoder", "train.eval_net")


def cluster_commands(workdir, num_processes: int = 2, port: int | None = None, **overrides) -> list[list[str]]:
    """One `train.diffusion` command line per process of a local cluster (the tiny config on every device)."""
    port = port or free_port()
    return [diffusion_cli_args(workdir, num_devices=0, **overrides) + distributed_flags(port, num_processes, i)
            for i in range(num_processes)]


def restore_state(workdir):
    experiment = diffusion_experiment.build_experiment(tiny_diffusion_config(), jax.devices()[:1])
    return Checkpointer(os.path.join(workdir, "checkpoints"), save_every=1).restore(abstract_like(experiment.state))[0]


def test_two_processes_train_to_completion_as_one_process_on_their_four_devices(tmp_path):
    workdir = tmp_path / "run"
    processes = start_processes(cluster_commands(workdir, total_steps=2, checkpoint_every=2), tmp_path / "logs")
    (_, main_log), (_, other_log) = finish_processes(processes, tmp_path / "logs")
    # Process 0 reports progress, process 1 plain lines naming itself (both logs redirected: no redraws).
    assert "train: 2/2 steps (100 %)" in main_log and "process 1 train: 2/2 steps (100 %)" in other_log
    assert "\r" not in main_log + other_log
    assert Checkpointer(workdir / "checkpoints", save_every=1).all_steps() == [2]
    trained = restore_state(str(workdir))

    # One process on 4 devices, fed the concatenation of the two processes' disjoint shards of each global batch.
    config = tiny_diffusion_config(num_devices=4)
    experiment = diffusion_experiment.build_experiment(config, jax.devices()[:4])
    shards = [make_iterator(make_dataset(experiment.source, global_batch_size=8, root_key=jax.random.key(config.seed),
                                         process_index=i, process_count=2)) for i in range(2)]
    state, losses = experiment.state, []
    for _ in range(2):
        local = [next(shard) for shard in shards]
        assert not np.array_equal(local[0]["image"], local[1]["image"])
        batch = {k: np.concatenate([local[0][k], local[1][k]]) for k in local[0]}
        state, metrics = experiment.jitted_step(state, parallel.global_batch(batch, experiment.mesh))
        losses.append(float(metrics["loss"]))
    np.testing.assert_allclose([r["loss"] for r in read_metrics(str(workdir)) if "loss" in r], losses, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7),
                 trained.params, jax.device_get(state.params))


def test_sigterm_to_one_process_saves_the_same_step_on_both_and_the_rerun_resumes_bitwise(tmp_path):
    workdir, metrics = tmp_path / "preempted", tmp_path / "preempted" / "metrics.jsonl"
    # checkpoint_every beyond the run: only the preemption save and the final save happen.
    # One device per process keeps the four processes of the resume below cheap on two cores.
    processes = start_processes(cluster_commands(workdir, total_steps=100_000, checkpoint_every=10**9),
                                tmp_path / "a", devices_per_process=1)
    deadline = time.time() + 240
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        for i, process in enumerate(processes):
            assert process.poll() is None, (tmp_path / "a" / f"{i}.err").read_text()[-3000:]
        time.sleep(0.2)
    processes[0].send_signal(signal.SIGTERM)  # process 1 gets no signal
    outputs = finish_processes(processes, tmp_path / "a")
    stopped = Checkpointer(workdir / "checkpoints", save_every=1).all_steps()
    assert len(stopped) == 1 and stopped[0] >= 3
    assert all(f"SIGTERM: saved step {stopped[0]}, exiting" in stdout for stdout, _ in outputs)

    total = stopped[0] + 2
    # The same commands again (with the longer schedule): they resume; a second cluster runs uninterrupted beside.
    resuming = start_processes(cluster_commands(workdir, total_steps=total, checkpoint_every=10**9), tmp_path / "b",
                               devices_per_process=1)
    finish_processes(start_processes(cluster_commands(tmp_path / "uninterrupted", total_steps=total,
                                                      checkpoint_every=10**9), tmp_path / "c",
                                     devices_per_process=1), tmp_path / "c")
    outputs = finish_processes(resuming, tmp_path / "b")
    assert all(f"restored step {stopped[0]}" in stdout for stdout, _ in outputs)
    resumed, uninterrupted = restore_state(str(workdir)), restore_state(str(tmp_path / "uninterrupted"))
    assert int(resumed.step) == int(uninterrupted.step) == total
    assert_trees_equal(resumed, uninterrupted)  # params, EMA, optimizer state and schedule position


def one_error_line(stderr: str) -> str:
    """The last line of stderr, after checking that no traceback or C++ fatal error came before it."""
    assert "Traceback" not in stderr and "Check failure" not in stderr, stderr[-3000:]
    return stderr.strip().splitlines()[-1]


def test_a_cluster_that_cannot_form_ends_in_one_line_naming_the_field_within_the_timeout(tmp_path):
    timeout = ["--config.distributed.initialization_timeout=3"]
    unused_port = free_port()
    # Nothing listens at the coordinator's address (process 0 was never started).
    alone = cluster_commands(tmp_path / "a", port=unused_port)[1] + timeout
    # Process 0 started alone while num_processes says 2.
    too_few = cluster_commands(tmp_path / "b")[0] + timeout
    # Both processes started, with different num_processes (JAX itself forms the cluster of the coordinator's count).
    port = free_port()
    mismatched = [cluster_commands(tmp_path / "c", port=port)[0],
                  cluster_commands(tmp_path / "c", num_processes=3, port=port)[1]]
    started = time.time()
    processes = start_processes([alone, too_few, *mismatched], tmp_path / "logs")
    lines = [one_error_line(stderr) for _, stderr in finish_processes(processes, tmp_path / "logs", expect=1)]
    assert time.time() - started < 120
    assert lines[0].startswith(f"error: distributed.coordinator_address: nothing listened at 127.0.0.1:{unused_port}")
    assert lines[1].startswith("error: distributed.num_processes: 2 processes did not all join")
    assert lines[2] == lines[3] == ("error: distributed.num_processes: the 2 processes were started with different "
                                    "values (2, 3); give every process the number started")


@pytest.mark.parametrize("flags, message", [
    (["--config.distributed.coordinator_address=127.0.0.1"], "distributed.coordinator_address: must be HOST:PORT"),
    (["--config.distributed.coordinator_address=127.0.0.1:1", "--config.distributed.num_processes=2",
      "--config.distributed.process_id=2"], "distributed.process_id: must be in [0, distributed.num_processes=2)"),
    (["--config.distributed.initialization_timeout=0"], "distributed.initialization_timeout: must be a whole"),
])
def test_a_malformed_distributed_config_fails_before_connecting(tmp_path, flags, message):
    command = diffusion_cli_args(tmp_path, num_devices=0) + ["--config.distributed.enabled=True", *flags]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert one_error_line(result.stderr).startswith(f"config error: {message}")


def test_single_process_entrypoints_refuse_distributed_flags_in_one_line(tmp_path):
    # Two of them through the command line (the refusal is the shared runner's; the next test checks that none of
    # the single-process configs has a `distributed` field).
    entrypoints = ("train.rl", "train.vae")
    commands = [[sys.executable, "-m", entrypoint, f"--workdir={tmp_path / entrypoint}",
                 "--config.distributed.enabled=True"] for entrypoint in entrypoints]
    outputs = finish_processes(start_processes(commands, tmp_path / "logs", devices_per_process=1), tmp_path / "logs",
                               expect=1)
    for entrypoint, (_, stderr) in zip(entrypoints, outputs):
        assert one_error_line(stderr) == (
            f"config error: --config.distributed.enabled: {entrypoint} runs on one process (no multi-host support); "
            f"the entrypoints that scale out over several processes are {', '.join(SCALES_OUT)}")
    assert not any((tmp_path / entrypoint).exists() for entrypoint in entrypoints)


def test_the_entrypoints_that_scale_out_are_those_whose_configs_have_a_distributed_sub_config():
    with_distributed = {"train.diffusion": diffusion_configs, "train.evaluate": evaluate_configs,
                        "train.sample": evaluate_configs, "train.prepare_latents": prepare_configs}
    assert set(SCALES_OUT) == set(with_distributed)
    assert all("distributed" in module.get_config() for module in with_distributed.values())
    for entrypoint in SINGLE_PROCESS_ENTRYPOINTS:
        module = __import__(f"configs.{entrypoint.split('.')[1]}", fromlist=["get_config"])
        assert "distributed" not in module.get_config()

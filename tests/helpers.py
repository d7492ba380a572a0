"""Helpers shared by the test modules (test modules never import each other)."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import chex
import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def with_overrides(config: Any, overrides: dict) -> Any:
    """`config` with each dotted `"a.b": value` of `overrides` set in place (returns `config`)."""
    for key, value in overrides.items():
        *path, leaf = key.split(".")
        node = config
        for part in path:
            node = node[part]
        node[leaf] = value
    return config


def assert_trees_equal(a: Any, b: Any) -> None:
    chex.assert_trees_all_equal(a, b)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


# A SiT small enough to train a few steps in seconds on the `cpu` preset's data.
DIFFUSION_TINY_OVERRIDES = {
    "batch_size": 8, "total_steps": 6, "log_every": 1, "checkpoint_every": 3, "num_devices": 1,
    "model.patch_size": 8, "model.hidden_size": 32, "model.depth": 2, "model.num_heads": 2,
    "optim.warmup_steps": 4, "sample.num_images": 4, "sample.num_steps": 2, "sample.cfg_scale": 1.5,
}


def tiny_diffusion_config(**overrides) -> Any:
    """The diffusion `cpu` preset shrunk by DIFFUSION_TINY_OVERRIDES, then `overrides`."""
    from configs import diffusion as diffusion_configs

    return with_overrides(diffusion_configs.get_config("cpu"), {**DIFFUSION_TINY_OVERRIDES, **overrides})


def train_diffusion_until_killed(workdir: str, step: int, saved: int) -> None:
    """Trains the tiny diffusion config in `workdir` and SIGKILLs this process at `step`, once checkpoint `saved`
    is on disk: a kill at a known point through the loop's public hooks (run it in a subprocess)."""
    import signal
    import time

    from jaxrep.experiments import diffusion
    from jaxrep.run.checkpoint import Checkpointer
    from jaxrep.run.loop import Hook

    def kill(state, at):
        if at == step:
            while Checkpointer(os.path.join(workdir, "checkpoints"), save_every=1).latest_step() != saved:
                time.sleep(0.01)  # the save of `saved` may still be committing in the background
            os.kill(os.getpid(), signal.SIGKILL)

    diffusion.train_and_evaluate(tiny_diffusion_config(), workdir, hooks=(Hook(kill, every=1),))


def diffusion_cli_args(workdir, **overrides) -> list[str]:
    """The `train.diffusion` command line of the tiny config plus `overrides`."""
    values = {**DIFFUSION_TINY_OVERRIDES, **overrides}
    return [sys.executable, "-m", "train.diffusion", "--config=configs/diffusion.py:cpu", f"--workdir={workdir}"] + [
        f"--config.{k}={v}" for k, v in values.items()]


def assert_sigterm_saves_and_exits_zero(command: list[str], workdir) -> str:
    """Runs `command` (a training entrypoint writing to `workdir`), sends SIGTERM once two metric lines are
    logged, and checks it exits 0 having saved a step >= 2; returns its stdout."""
    import signal
    import subprocess
    import time

    from jaxrep.run.checkpoint import Checkpointer

    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-2000:]
    assert "SIGTERM: saved step" in stdout
    saved = Checkpointer(workdir / "checkpoints", save_every=1).latest_step()
    assert saved is not None and saved >= 2
    return stdout


def first_batches(config: Any, mesh: jax.sharding.Mesh, count: int) -> list:
    """The first `count` global batches of a diffusion config's data, as the entrypoint shards them."""
    from jaxrep import parallel
    from jaxrep.data import make_dataset, make_iterator
    from jaxrep.experiments import diffusion as diffusion_experiment

    dataset = make_dataset(diffusion_experiment.build_source(config), global_batch_size=config.batch_size,
                           root_key=jax.random.key(0))
    iterator = make_iterator(dataset)
    return [parallel.global_batch(next(iterator), mesh) for _ in range(count)]


def run_steps(step_fn, state, batches) -> tuple[Any, list[float]]:
    """(final state, losses) of step_fn over `batches`."""
    losses = []
    for batch in batches:
        state, metrics = step_fn(state, batch)
        losses.append(float(metrics["loss"]))
    return state, losses


# A 288-image subgrid of dSprites (3 shapes x 2 scales x 3 orientations x 4 x 4 positions) and a tiny VAE.
VAE_TINY_OVERRIDES = {
    "batch_size": 8, "total_steps": 4, "log_every": 1, "checkpoint_every": 2, "num_devices": 1,
    "model.latent_dim": 3, "model.channels": (4, 4, 4, 4), "model.hidden_dim": 16,
    "data.factor_starts": (0, 0, 0, 0, 0), "data.factor_strides": (1, 3, 10, 8, 8), "regularizer.num_steps": 3,
    "eval.num_images": 64, "eval.dci_trees": 2, "eval.nll_images": 8, "eval.nll_samples": 4, "eval.vp_pairs": 20,
    "eval.num_strips": 2,
}
VAE_IMAGE = 64


def tiny_vae_config(preset: str = "plain", **overrides) -> Any:
    """The VAE preset `preset` shrunk by VAE_TINY_OVERRIDES, then `overrides`."""
    from configs import vae as vae_configs

    return with_overrides(vae_configs.get_config(preset), {**VAE_TINY_OVERRIDES, **overrides})


def strip_grid_shape(rows: int, columns: int, pad: int = 1) -> tuple[int, int]:
    """(height, width) of a `save_image_grid` PNG of rows x columns 64-pixel images."""
    return rows * (VAE_IMAGE + pad) + pad, columns * (VAE_IMAGE + pad) + pad


def losses(workdir) -> dict[int, float]:
    """{step: loss} of a run's metrics.jsonl."""
    from jaxrep.run.logging import read_metrics

    return {r["step"]: r["loss"] for r in read_metrics(str(workdir)) if "loss" in r}


def assert_strips(workdir, step: int, num_strips: int, num_potentials: int, num_steps: int) -> None:
    """strips/<step>_<i>.png exist for i < num_strips, each K rows x T + 1 columns of 64-pixel images."""
    from PIL import Image

    names = [f"{step:07d}_{i}.png" for i in range(num_strips)]
    assert set(names) <= set(os.listdir(workdir / "strips"))
    for name in names:
        shape = np.asarray(Image.open(workdir / "strips" / name)).shape
        assert shape == strip_grid_shape(num_potentials, num_steps + 1)


def distributed_flags(port: int, num_processes: int, process_id: int, timeout: int = 120) -> list[str]:
    """The `--config.distributed.*` flags of one process of a local cluster, as the README shows them."""
    return ["--config.distributed.enabled=True", f"--config.distributed.coordinator_address=127.0.0.1:{port}",
            f"--config.distributed.num_processes={num_processes}", f"--config.distributed.process_id={process_id}",
            f"--config.distributed.initialization_timeout={timeout}"]


def local_devices_env(count: int) -> dict:
    """os.environ with `count` fake CPU devices per process (the tests' other XLA flags kept)."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    return dict(os.environ, XLA_FLAGS=" ".join(flags + [f"--xla_force_host_platform_device_count={count}"]))


def start_processes(commands: list[list[str]], out_dir, devices_per_process: int = 2) -> list:
    """Starts one process per command from the repository root, each with `devices_per_process` CPU devices,
    writing its stdout and stderr to `out_dir/<i>.out` and `.err` (files, not pipes, so a chatty process never
    blocks on a full pipe while a test polls)."""
    import subprocess

    os.makedirs(out_dir, exist_ok=True)
    env = local_devices_env(devices_per_process)
    return [subprocess.Popen(command, cwd=REPO, env=env, stdout=open(os.path.join(out_dir, f"{i}.out"), "w"),
                             stderr=open(os.path.join(out_dir, f"{i}.err"), "w"))
            for i, command in enumerate(commands)]


def finish_processes(processes: list, out_dir, expect: int = 0, timeout: float = 300) -> list[tuple[str, str]]:
    """Waits for `processes` (from `start_processes`), asserts each exited with `expect`; returns their
    (stdout, stderr)."""
    outputs = []
    for i, process in enumerate(processes):
        returncode = process.wait(timeout=timeout)
        out = [open(os.path.join(out_dir, f"{i}.{kind}")).read() for kind in ("out", "err")]
        assert returncode == expect, f"process {i} exited {returncode}: {out[1][-3000:]}"
        outputs.append((out[0], out[1]))
    return outputs

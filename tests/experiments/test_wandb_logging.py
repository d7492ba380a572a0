"""`--config.logging.wandb=True` logs a run to W&B, tested in W&B's offline mode through the command line: the
config, every scalar of metrics.jsonl and the sample grids reach the run's log, and a resumed run continues the
same W&B run."""

import glob
import os
import subprocess

from jaxrep.run.logging import WANDB_RUN_ID, read_metrics
from tests.extras import import_extra
from tests.helpers import diffusion_cli_args

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_resumed_run_continues_its_wandb_run_with_every_scalar(tmp_path):
    import_extra("wandb", "wandb")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    workdir = tmp_path / "run"
    for total_steps in (2, 4):  # the second command resumes the first run
        run = subprocess.run(diffusion_cli_args(workdir, **{"logging.wandb": True, "logging.tags": "cpu,test",
                                                            "total_steps": total_steps, "sample_every": 2,
                                                            "checkpoint_every": 2}),
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
    run_id = (workdir / WANDB_RUN_ID).read_text().strip()
    logs = sorted(glob.glob(str(workdir / "wandb" / f"offline-run-*-{run_id}" / f"run-{run_id}.wandb")))
    assert len(logs) == 2  # one W&B run, written by two processes
    recorded = b"".join(open(path, "rb").read() for path in logs)
    scalars = {name for record in read_metrics(str(workdir)) for name in record if name != "step"}
    # W&B's log is protobuf records: each history key is stored as its length byte and its UTF-8 bytes.
    assert scalars and all(bytes([len(name)]) + name.encode() in recorded for name in scalars), scalars
    assert b"samples" in recorded and b"total_steps" in recorded  # the sample grids and the config


def test_a_wandb_run_without_a_project_is_refused_before_anything_is_built(tmp_path):
    run = subprocess.run(diffusion_cli_args(tmp_path, **{"logging.wandb": True, "logging.project": " "}), cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == "config error: logging.project: empty; name the W&B project"
    assert not (tmp_path / "checkpoints").exists()

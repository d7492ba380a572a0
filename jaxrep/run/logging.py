"""Run outputs: metrics (stdout progress bar, `metrics.jsonl`, TensorBoard, optionally W&B), configs and pictures.

Everything writes into the run's work directory, a local path or an object-store URL (`jaxrep.files`). Only
process 0 writes on multi-host runs.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import sys
import time
import uuid
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxrep import files
from jaxrep.config_checks import ConfigError


def is_main_process() -> bool:
    return jax.process_index() == 0


def _to_float(value: Any) -> float:
    return float(np.asarray(value))


@dataclasses.dataclass(frozen=True)
class Media:
    """A picture or video file to log next to the scalars (`MetricLogger.log`): W&B shows it; metrics.jsonl and
    TensorBoard keep scalars only (the file itself is in the work directory)."""

    path: str
    kind: str = "image"  # "image" or "video"


WANDB_RUN_ID = "wandb_run_id"  # work-directory file: a resumed run continues the same W&B run


class _WandbRun:
    """The W&B side of a `MetricLogger` (`config.logging`: wandb, project, entity, name, tags)."""

    def __init__(self, workdir: str, logging_config: Any, run_config: Any):
        try:
            import wandb
        except ImportError as error:
            raise ConfigError("logging.wandb: W&B is not installed; pip install 'jaxrep[wandb]'") from error
        id_path = files.path(files.join(workdir, WANDB_RUN_ID))
        if id_path.exists():
            run_id = id_path.read_text().strip()
        else:
            run_id = uuid.uuid4().hex[:12]
            id_path.write_text(run_id)
        tags = [tag.strip() for tag in logging_config.tags.split(",") if tag.strip()]
        self._wandb = wandb
        self._run = wandb.init(project=logging_config.project, entity=logging_config.entity or None,
                               name=logging_config.name or files.path(workdir).name,
                               tags=tags, id=run_id, resume="allow",
                               dir=workdir if files.is_local(workdir) else None,  # W&B's own files: local
                               config=run_config.to_dict() if hasattr(run_config, "to_dict") else run_config)

    def log(self, step: int, scalars: Mapping[str, float], media: Mapping[str, Media]) -> None:
        entries = {name: value for name, value in scalars.items() if math.isfinite(value)}
        for name, item in media.items():
            local = files.local_copy(item.path)
            entries[name] = (self._wandb.Video(local, format="mp4") if item.kind == "video"
                             else self._wandb.Image(local))
        self._run.log(entries, step=int(step))

    def close(self) -> None:
        self._run.finish()


class _ObjectLines:
    """`metrics.jsonl` on an object store, which cannot append: the lines are kept here, and the whole object is
    uploaded again after every write (an object appears whole, so a reader sees every line up to some write)."""

    def __init__(self, location: str):
        self._path = files.path(location)
        self._text = self._path.read_text() if self._path.exists() else ""

    def write(self, line: str) -> None:
        self._text += line
        self._path.write_text(self._text)

    def close(self) -> None:
        pass


class MetricLogger:
    """Appends `{"step": s, **metrics}` lines to `metrics.jsonl` and scalars to TensorBoard events; with
    `config.logging.wandb` also to a W&B run (scalars, `Media` files and the config; the run's id is kept in the
    work directory, so a resumed run continues the same W&B run). Only process 0 logs. On an object store
    TensorBoard's events are uploaded whole at each flush (tensorboardX's gs:// writer)."""

    def __init__(self, workdir: str, *, tensorboard: bool = True, config: Any = None):
        self.workdir = workdir
        self._enabled = is_main_process()
        self._jsonl = None
        self._tb = None
        self._wandb = None
        if self._enabled:
            files.path(workdir).mkdir(parents=True, exist_ok=True)
            metrics = files.join(workdir, "metrics.jsonl")
            self._jsonl = open(metrics, "a", buffering=1) if files.is_local(workdir) else _ObjectLines(metrics)
            if tensorboard:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(files.join(workdir, "tensorboard"))
            logging_config = config.get("logging") if config is not None else None
            if logging_config is not None and logging_config.wandb:
                self._wandb = _WandbRun(workdir, logging_config, config)

    def log(self, step: int, metrics: Mapping[str, Any]) -> dict[str, float]:
        """Logs the scalars of `metrics` (and, to W&B, its `Media` entries); returns the scalars."""
        media = {k: v for k, v in metrics.items() if isinstance(v, Media)}
        scalars = {k: _to_float(v) for k, v in metrics.items() if k not in media}
        if self._enabled and scalars:
            record = {"step": int(step), **{k: (v if math.isfinite(v) else str(v)) for k, v in scalars.items()}}
            self._jsonl.write(json.dumps(record) + "\n")
            if self._tb is not None:
                for name, value in scalars.items():
                    self._tb.add_scalar(name, value, int(step))
        if self._enabled and self._wandb is not None and (scalars or media):
            self._wandb.log(step, scalars, media)
        return scalars

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.close()


def read_metrics(workdir: str) -> list[dict]:
    """Reads back `metrics.jsonl` (for studies, plots and tests)."""
    text = files.path(files.join(workdir, "metrics.jsonl")).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class LineProgress:
    """Progress for a log that is not a terminal (a file, a pod's log collector): one plain line at most every
    `interval` seconds and one when it closes, never tqdm's carriage-return redraws. tqdm's `update`,
    `set_postfix` and `close`."""

    def __init__(self, total: int, initial: int = 0, desc: str = "train", unit: str = "step",
                 interval: float = 30.0, file: Any = None):
        self.total, self.n, self.desc, self.unit, self.interval = total, initial, desc, unit, interval
        self._file = file or sys.stderr
        self._start_n, self._start = initial, time.perf_counter()
        self._last = self._start
        self._postfix: dict[str, Any] = {}
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.perf_counter() - self._last >= self.interval:
            self._write()

    def set_postfix(self, **fields: Any) -> None:
        self._postfix = fields

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._write()

    def _write(self) -> None:
        now = time.perf_counter()
        self._last = now
        elapsed = now - self._start
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else 0.0
        fields = "".join(f", {name}={value}" for name, value in self._postfix.items())
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}s ({100 * self.n / max(self.total, 1):.0f} %), "
              f"{rate:.2f} {self.unit}/s, {elapsed:.0f} s{fields}", file=self._file, flush=True)


def progress_bar(total: int, initial: int = 0, desc: str = "train", unit: str = "step", show: bool = True):
    """Progress if `show`: a tqdm bar on the main process's terminal; plain periodic lines (`LineProgress`) when
    stderr is redirected, and on every other process of a multi-process run (named by its index)."""
    if show and not is_main_process():
        return LineProgress(total, initial, f"process {jax.process_index()} {desc}", unit)
    if show and not sys.stderr.isatty():
        return LineProgress(total, initial, desc, unit)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, disable=not show)


def workdir_summary(workdir: str, since: float, *, title: str, next_command: str = "") -> str:
    """What a run left in `workdir`: the latest checkpoint step, the last logged metrics, the files written since
    the time `since` (newest first), TensorBoard, and the next command."""
    workdir = str(files.path(workdir))
    lines = [title, f"  work directory: {workdir}"]
    checkpoints = files.path(files.join(workdir, "checkpoints"))
    steps = sorted(int(entry.name) for entry in (checkpoints.iterdir() if checkpoints.is_dir() else ())
                   if entry.name.isdigit())
    if steps:
        lines.append(f"  checkpoints: {checkpoints} (latest step {steps[-1]})")
    logged = [record for record in (read_metrics(workdir) if files.path(files.join(workdir, "metrics.jsonl")).exists()
                                    else []) if "step" in record]
    training = lambda name: name not in _BOOKKEEPING and not name.startswith("eval/")  # noqa: E731
    evaluation = lambda name: name.startswith("eval/")  # noqa: E731
    for kind, marker, keep in (("training", "loss", training), ("evaluation", "eval/", evaluation)):
        record = next((r for r in reversed(logged) if any(name.startswith(marker) for name in r)), None)
        values = [f"{name} {value:.4g}" for name, value in (record or {}).items()
                  if name != "step" and keep(name) and isinstance(value, float)]
        if values:
            lines.append(f"  last {kind} metrics (step {record['step']}, metrics.jsonl): {', '.join(values[:8])}")
    folder = files.path(workdir)
    written = sorted(((modified, name) for name, modified in (_run_files(folder) if folder.is_dir() else {}).items()
                      if modified >= since), reverse=True)
    if written:
        names = [name for _, name in written[:6]]
        more = f" (+{len(written) - 6} more)" if len(written) > 6 else ""
        lines.append(f"  written: {', '.join(names)}{more}")
    if files.path(files.join(workdir, "tensorboard")).is_dir():
        lines.append(f"  curves: tensorboard --logdir {files.join(workdir, 'tensorboard')}")
    if next_command:
        lines.append(f"  next: {next_command}")
    return "\n".join(lines)


# Logged beside every training step, and of no interest in a run's summary.
_BOOKKEEPING = ("learning_rate", "samples_per_s", "finite", "grad_norm")


def _run_files(folder) -> dict[str, float]:
    """{relative name: modification time} of the run's own files: checkpoints' and TensorBoard's internals left out
    (summarised separately), and hidden files."""
    own = files.files_under(folder, keep=lambda name: not name.startswith(".")
                            and name not in ("checkpoints", "tensorboard"))
    return {name: os.path.getmtime(entry) if files.is_local(entry) else entry.stat().mtime  # local: to the ns
            for name, entry in own.items()}


def save_config(workdir: str, config: Any) -> None:
    """Writes the resolved config as `config.json` (ml_collections `to_json_best_effort`)."""
    if not is_main_process():
        return
    text = config.to_json_best_effort(indent=2) if hasattr(config, "to_json_best_effort") else json.dumps(config, indent=2)
    files.write_bytes(files.join(workdir, "config.json"), text.encode())


def to_uint8(images: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Maps float images in `value_range` to uint8 with clipping; uint8 input is returned unchanged."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    low, high = value_range
    scaled = (images.astype(np.float32) - low) / (high - low)
    return np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, ncols: int | None = None, pad: int = 1) -> np.ndarray:
    """Tiles uint8 images (N, H, W, C) into one (rows*(H+pad)+pad, cols*(W+pad)+pad, C) array."""
    n, h, w, c = images.shape
    ncols = ncols or int(math.ceil(math.sqrt(n)))
    nrows = int(math.ceil(n / ncols))
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255, np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top:top + h, left:left + w] = image
    return grid


def save_image_grid(path: str, images: np.ndarray, *, ncols: int | None = None,
                    value_range: tuple[float, float] = (-1.0, 1.0), upscale: int = 1) -> None:
    """Saves images (N, H, W, C) with C in {1, 3} as one PNG grid, optionally upscaled (nearest)."""
    from PIL import Image

    grid = image_grid(to_uint8(images, value_range), ncols)
    if upscale > 1:
        grid = grid.repeat(upscale, axis=0).repeat(upscale, axis=1)
    if grid.shape[-1] == 1:
        grid = grid[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(grid).save(buffer, format="PNG")
    files.write_bytes(path, buffer.getvalue())


def save_video(path: str, frames: Sequence[np.ndarray], fps: int = 30) -> None:
    """Writes uint8 RGB frames (T of (H, W, 3)) as an H.264 MP4 (imageio with its bundled ffmpeg)."""
    import imageio.v3 as iio

    files.write_bytes(path, iio.imwrite("<bytes>", np.stack(frames), extension=".mp4", fps=fps, codec="libx264",
                                        macro_block_size=1))


def save_curves(path: str, curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], *,
                xlabel: str = "step", ylabel: str = "", title: str = "") -> None:
    """Plots named (x, y) curves into one PNG (learning curves, FD against steps, ...)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, (xs, ys) in curves.items():
        ax.plot(xs, ys, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(curves) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    files.write_bytes(path, buffer.getvalue())

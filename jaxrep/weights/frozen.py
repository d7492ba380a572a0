"""Frozen-weight checkpoints: the parameters of a trained network plus the metadata that rebuilds it.

The in-repo target encoder (`jaxrep.align.encoder`) and the evaluation network (`jaxrep.weights.features`) are
both written this way: one orbax step (`jaxrep.run.checkpoint.Checkpointer`, checksummed) whose item `state` is
`{"params": params}` and whose item `extra` is a JSON dict with `kind` naming what wrote it. Readers check the
kind, rebuild the model from the metadata and restore the parameters onto one local device.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp

from jaxrep import files
from jaxrep.run.checkpoint import Checkpointer, CheckpointMismatchError
from jaxrep.weights.convert import WeightFileError


class FrozenWeightsError(WeightFileError):
    """A frozen-weight directory that is missing, of another kind, or whose weights do not fit its metadata."""


def save_frozen(directory: str | os.PathLike, params: Any, metadata: dict) -> None:
    """Writes `params` and `metadata` (JSON, with a "kind" entry) to `directory` synchronously."""
    if "kind" not in metadata:
        raise ValueError("frozen-weight metadata needs a 'kind'")
    checkpointer = Checkpointer(directory, save_every=1, keep=1, async_save=False)
    checkpointer.save(0, {"params": params}, metadata, force=True)
    checkpointer.close()


def read_frozen_metadata(directory: str | os.PathLike, kind: str, *, what: str, writer: str,
                         other_kind_hint: str = "") -> dict:
    """The metadata dict of `directory`; FrozenWeightsError when it is missing or not of `kind`.

    `what` ("encoder") and `writer` ("train/encoder.py") name the expected checkpoint in the messages;
    `other_kind_hint` is appended when the directory is an orbax checkpoint of another kind.
    """
    import orbax.checkpoint as ocp

    article = "an" if what[0] in "aeiou" else "a"
    directory = str(files.path(directory))
    if not files.path(directory).is_dir():
        raise FrozenWeightsError(f"no {what} checkpoint directory at {directory!r}")
    manager = ocp.CheckpointManager(directory, item_names=("state", "extra"))
    try:
        step = manager.latest_step()
        extra = None if step is None else manager.restore(
            step, args=ocp.args.Composite(extra=ocp.args.JsonRestore()))["extra"]
    except (ValueError, KeyError, FileNotFoundError) as error:
        raise FrozenWeightsError(f"{directory!r} is not {article} {what} checkpoint ({error})") from error
    finally:
        manager.close()
    if step is None:
        raise FrozenWeightsError(f"{directory!r} holds no {what} checkpoint")
    if not isinstance(extra, dict) or extra.get("kind") != kind:
        raise FrozenWeightsError(f"{directory!r} is an orbax checkpoint but not {article} {what} written by {writer} "
                                 f"(its metadata has no kind={kind!r}){other_kind_hint}")
    return dict(extra)


def restore_frozen_params(directory: str | os.PathLike, model: Any, input_shape: tuple[int, ...]) -> Any:
    """The params of `model` (initialised on an input of `input_shape`) stored in `directory`, on the first local
    device; FrozenWeightsError naming the first mismatch when they do not fit."""
    directory = str(files.path(directory))
    inputs = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), inputs)["params"]
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device), shapes)
    try:
        state, _ = Checkpointer(directory, save_every=1).restore({"params": abstract})
    except CheckpointMismatchError as error:
        raise FrozenWeightsError(f"the weights in {directory!r} do not fit the architecture its metadata records: "
                                 f"{str(error).splitlines()[0]}") from error
    return state["params"]

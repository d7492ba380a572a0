"""Meshes, shardings and global batches (data parallelism under `jax.jit`).

The mesh has one `data` axis with `AxisType.Auto` (classic compiler-chosen sharding): `jax.make_mesh`
defaults to Explicit axes, on which linen embeddings inside a batch-sharded jit fail. The same code runs on 1
device, 8 fake CPU devices, 8 GPUs, and a multi-host TPU pod after `jaxrep.run.distributed.initialize_from_config`.
Train states are replicated over it or, with `param_sharding="fsdp"`, split over the same axis
(`state_shardings`).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D data-parallel mesh over `devices` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `data`, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


PARAM_SHARDINGS = ("replicate", "fsdp")


def fsdp_spec(shape: Sequence[int], num_shards: int, min_size: int = 2**14) -> PartitionSpec:
    """big_vision's `fsdp` rule for one array: its largest axis that `num_shards` divides (the first of equal
    ones) split over `data`; arrays of fewer than `min_size` elements (biases, norms, scalars, keys) and arrays
    with no such axis stay replicated."""
    if int(np.prod(shape, dtype=np.int64)) < min_size:
        return PartitionSpec()
    divisible = [axis for axis, size in enumerate(shape) if size % num_shards == 0]
    if not divisible:
        return PartitionSpec()
    axis = max(divisible, key=lambda a: (shape[a], -a))
    return PartitionSpec(*[DATA_AXIS if a == axis else None for a in range(len(shape))])


def state_shardings(tree: Any, mesh: Mesh, param_sharding: str = "replicate", min_size: int = 2**14) -> Any:
    """NamedShardings for every leaf of a train state (arrays or ShapeDtypeStructs).

    "replicate": every leaf whole on every device (plain data parallelism). "fsdp": parameters, EMA and
    optimizer moments split over the `data` axis by `fsdp_spec` (ZeRO-3 / FSDP: under `jax.jit` XLA gathers
    each weight where it is used and reduce-scatters its gradient), so their bytes per device fall by the
    mesh size; the step's numbers are the replicated step's up to float reassociation.
    """
    if param_sharding not in PARAM_SHARDINGS:
        raise ValueError(f"param_sharding: must be one of {PARAM_SHARDINGS}, got {param_sharding!r}")
    if param_sharding == "replicate":
        return jax.tree.map(lambda _: replicated_sharding(mesh), tree)
    shards = mesh.shape[DATA_AXIS]
    return jax.tree.map(lambda leaf: NamedSharding(mesh, fsdp_spec(leaf.shape, shards, min_size)), tree)


def shardings_of(tree: Any) -> Any:
    """The sharding of every array leaf of `tree`."""
    return jax.tree.map(lambda leaf: leaf.sharding, tree)


def global_batch(local_batch: Any, mesh: Mesh) -> Any:
    """Assembles each process's slice (a pytree of host arrays) into global batch-sharded arrays."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier `name` (`multihost_utils.sync_global_devices`); a no-op in a
    single-process run."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)

"""The grain input pipeline: per-host shards, reshuffled epochs, fixed-size batches, checkpointable state.

Each process reads only its own shard (`source[process_index::process_count]`) and yields its
`global_batch // process_count` examples per step; `jaxrep.parallel.global_batch` assembles the global array.
The iterator's state (`get_state()`, a small JSON dict) is saved with the model so a resumed run sees exactly
the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np


def _stack(examples) -> dict:
    return {key: np.stack([np.asarray(e[key]) for e in examples]) for key in examples[0]}


# The data order's stream, folded out of the run's root key apart from the init/train/eval streams.
DATA_STREAM = 0xDA7A


def shuffle_seed(root_key: jax.Array) -> int:
    """The grain shuffle seed of a run: 31 random bits of `fold_in(root_key, DATA_STREAM)`, the same on every host."""
    bits = jax.random.bits(jax.random.fold_in(root_key, DATA_STREAM), dtype=jnp.uint32)
    return int(bits) >> 1


def make_dataset(source: Any, *, global_batch_size: int, root_key: jax.Array, process_index: int | None = None,
                 process_count: int | None = None, keys: tuple[str, ...] = ("image", "label"),
                 num_workers: int = 0) -> grain.IterDataset:
    """Infinite, shuffled (new order each epoch), batched dataset of this process's shard.

    Args:
      source: random-access source (`__len__`, `__getitem__` returning a dict).
      global_batch_size: examples per step over all processes (divisible by process_count).
      root_key: the run's root key (`jax.random.key(config.seed)`); the order derives from it (`shuffle_seed`),
        like every other random stream of the run.
      keys: which fields of each example to keep.
      num_workers: grain worker processes that read, decode and batch examples (`mp_prefetch`); 0: in-process.
        The iterator state is checkpointable either way.
    """
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if global_batch_size % process_count:
        raise ValueError(f"batch_size: {global_batch_size} is not divisible by {process_count} processes")
    local_batch = global_batch_size // process_count
    shard = grain.MapDataset.source(source)[process_index::process_count]
    if len(shard) < local_batch:
        raise ValueError(f"batch_size: per-process batch {local_batch} exceeds the {len(shard)} examples of the shard")
    dataset = (shard.shuffle(seed=shuffle_seed(root_key)).repeat()
               .map(lambda example: {k: example[k] for k in keys})
               .batch(local_batch, drop_remainder=True, batch_fn=_stack))
    dataset = dataset.to_iter_dataset()
    if num_workers:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; outside an absl app use their defaults
            flags.FLAGS.mark_as_parsed()
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return dataset


def make_iterator(dataset: grain.IterDataset, state: dict | None = None):
    """An iterator over `dataset`, restored to `state` (from `iterator.get_state()`) when given."""
    iterator = iter(dataset)
    if state:
        iterator.set_state(state)
    return iterator

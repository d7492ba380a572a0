"""Applying a jitted function to a large host array in fixed-size chunks of its leading axis."""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np


def map_in_chunks(fn: Callable[[np.ndarray], jax.Array], inputs: np.ndarray, chunk: int) -> np.ndarray:
    """`fn` over `inputs` (N, ...) in chunks of min(chunk, N) rows, concatenated on the host: (N, ...).

    The last chunk is padded with zeros to the same size, so a jitted `fn` compiles once, and the padding's
    rows are dropped; `fn` must act on each row independently (a forward pass, not a batch statistic).
    """
    inputs = np.asarray(inputs)
    count = len(inputs)
    if count == 0 or chunk < 1:
        raise ValueError(f"map_in_chunks needs rows and a positive chunk, got {count} rows and chunk {chunk}")
    chunk = min(chunk, count)
    padded = np.concatenate([inputs, np.zeros((-count % chunk, *inputs.shape[1:]), inputs.dtype)])
    return np.concatenate([np.asarray(fn(padded[i:i + chunk])) for i in range(0, len(padded), chunk)])[:count]

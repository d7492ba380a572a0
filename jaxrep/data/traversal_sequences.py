"""Transformation sequences from dSprites factors, the data of the from-scratch potential-flow VAE
(Song et al., ICML 2023; the official `dsprites.py` `DSpritesDataset`/`SequenceDataset` and
`lib/trainer_vae_scratch_dsprites.py`).

A sequence starts at an image x with factors f and changes one factor k by one class per step, cyclically:

    x_t = image(f with f_k <- (f_k + t) mod size_k),   t = 0, 1, ...

The official loader works on a subgrid of dSprites, `values[start:stop:stride]` per factor (stop =
`max_transform_len` = 30, strides (1, 1, 4, 4, 4), starts (0, 1, 0, 0, 0)): 3 shapes x 5 scales x 8
orientations x 8 x 8 positions = 7680 images, so one step moves a position by 4 of the 32 pixels classes.
Every training example is a triple (x, x_t, x_{t+1}) with its factor k and step t in [0, T - 2] (T = the
rollout length, the official `num_support_timesteps // 2`).

Deviation: the official loader (`dsprites.py` `SequenceDataset.__getitem__`, called once per batch through a
`BatchSampler`) draws one k per batch but a fresh t per example, builds each example's x_t, x_{t+1} from its
own t, and returns only the last example's t; the trainer (`lib/trainer_vae_scratch_dsprites.py`) rolls the
whole batch's flow out to that one t (`time_stamp = step * ones`; `WavePDE.forward` reads `t[0]`). So in the
official code most pairs are matched to flow steps at another t. Here every example has its own (k, t) and its
flow is read at its own t, because `TransformationSequences` enumerates all (image, k, t) triples as a
random-access source, so the grain pipeline's shuffle draws them uniformly, deterministically and resumably.

Rendering a dSprites image costs milliseconds, so `DSpritesGrid` renders each image of the subgrid once
and keeps it (in memory, 4 KiB per image).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jaxrep.data.procedural import DSprites

# The official loader's subgrid of dSprites (`dsprites.py`: speeds, start_idx, max_transform_len).
OFFICIAL_STARTS = (0, 1, 0, 0, 0)
OFFICIAL_STRIDES = (1, 1, 4, 4, 4)
OFFICIAL_STOP = 30


def shifted_factors(factors: np.ndarray, factor: int, shift: int, sizes: Sequence[int]) -> np.ndarray:
    """factors (F,) with entry `factor` moved by `shift` classes, cyclically in [0, sizes[factor])."""
    shifted = np.array(factors, dtype=np.int32, copy=True)
    shifted[factor] = (shifted[factor] + shift) % sizes[factor]
    return shifted


class DSpritesGrid:
    """The subgrid `values[start:stop:stride]` of every dSprites factor; a random-access source.

    Items: {"image": (64, 64, 1) float32 in {-1, 1}, "factors": (5,) int32 classes *within the subgrid*}.
    Images are rendered on first access and cached.
    """

    def __init__(self, starts: Sequence[int] = OFFICIAL_STARTS, stop: int = OFFICIAL_STOP,
                 strides: Sequence[int] = OFFICIAL_STRIDES):
        self.dsprites = DSprites()
        if not len(starts) == len(strides) == len(self.dsprites.factor_sizes):
            raise ValueError(f"need one start and one stride per dSprites factor {self.dsprites.factor_names}, "
                             f"got {tuple(starts)} and {tuple(strides)}")
        self.factor_names = self.dsprites.factor_names
        self.factor_values = tuple(np.arange(size)[start:stop:stride] for size, start, stride
                                   in zip(self.dsprites.factor_sizes, starts, strides))
        self.factor_sizes = tuple(len(values) for values in self.factor_values)
        if min(self.factor_sizes) == 0:
            raise ValueError(f"empty subgrid: factor sizes {self.factor_sizes} from starts {tuple(starts)}, "
                             f"stop {stop}, strides {tuple(strides)}")
        self.image_shape = self.dsprites.image_shape
        self._images = np.zeros((len(self),) + self.image_shape, np.bool_)
        self._rendered = np.zeros((len(self),), np.bool_)

    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes))

    def factors(self, index: int) -> np.ndarray:
        """Subgrid classes (5,) int32 of image `index` (mixed radix, last factor fastest)."""
        return np.array(np.unravel_index(int(index), self.factor_sizes), dtype=np.int32)

    def index(self, factors: np.ndarray) -> int:
        return int(np.ravel_multi_index(tuple(np.asarray(factors)), self.factor_sizes))

    def image(self, index: int) -> np.ndarray:
        """(64, 64, 1) float32 in {-1, 1}."""
        if not self._rendered[index]:
            classes = [values[f] for values, f in zip(self.factor_values, self.factors(index))]
            self._images[index] = self.dsprites[self.dsprites.index(classes)]["image"] > 0
            self._rendered[index] = True
        return np.where(self._images[index], 1.0, -1.0).astype(np.float32)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.image(int(index)), "factors": self.factors(int(index))}


class TransformationSequences:
    """Random access over every (start image, factor k, step t) triple of a `DSpritesGrid`.

    Items: {"image": x, "image_t": x_t, "image_next": x_{t+1} (each (64, 64, 1)), "potential": k (int32),
    "time": t (int32), "factors": (5,) int32 of x}. Potential k is trained on sequences of factor
    `sequence_factors[k]`.

    Args:
      grid: the images.
      sequence_factors: dSprites factor names, one per potential (the official `seq_transforms`).
      num_steps: T, the flow's rollout length; t ranges over [0, T - 2] as the official `randint(0, T - 1)`.
    """

    def __init__(self, grid: DSpritesGrid, sequence_factors: Sequence[str], num_steps: int):
        unknown = [name for name in sequence_factors if name not in grid.factor_names]
        if unknown:
            raise ValueError(f"unknown factors {unknown}; dSprites has {grid.factor_names}")
        if num_steps < 2:
            raise ValueError(f"num_steps must be >= 2 (pairs need two flow steps), got {num_steps}")
        self.grid = grid
        self.sequence_factors = tuple(grid.factor_names.index(name) for name in sequence_factors)
        self.num_times = num_steps - 1
        self.image_shape = grid.image_shape

    def __len__(self) -> int:
        return len(self.grid) * len(self.sequence_factors) * self.num_times

    def __getitem__(self, index: int) -> dict:
        start, potential, time = np.unravel_index(int(index), (len(self.grid), len(self.sequence_factors),
                                                               self.num_times))
        factors = self.grid.factors(start)
        factor, sizes = self.sequence_factors[potential], self.grid.factor_sizes
        image_t = self.grid.image(self.grid.index(shifted_factors(factors, factor, time, sizes)))
        image_next = self.grid.image(self.grid.index(shifted_factors(factors, factor, time + 1, sizes)))
        return {"image": self.grid.image(start), "image_t": image_t, "image_next": image_next,
                "potential": np.int32(potential), "time": np.int32(time), "factors": factors}

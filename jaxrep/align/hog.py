"""Histogram-of-oriented-gradients tokens: a parameter-free target "encoder" for representation alignment.

iREPA (Singh et al., arXiv 2512.10794) reports that classical spatial features such as HOG also help as REPA
targets, evidence that the targets' spatial structure, not their semantic knowledge, drives the gain. This is
Dalal & Triggs' HOG as `skimage.feature.hog` computes it with `cells_per_block=(1, 1)`: central-difference
gradients (zero on the border rows/columns), per pixel the channel of largest gradient magnitude, unsigned
orientations in [0, 180) hard-binned into `orientations` bins, each cell's histogram the mean magnitude per
bin, then L2-Hys normalisation of every cell (L2, clip at 0.2, L2 again; eps 1e-5). One cell per SiT patch
gives one `orientations`-d token per patch, so the tokens live on the patch grid like a ViT's.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["hog_cells", "HOG"]

_EPS = 1e-5


def _central_gradients(images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(g_row, g_col), each (B, H, W, C): x[i + 1] - x[i - 1], zero on the first and last row (column)."""
    g_row = jnp.zeros_like(images).at[:, 1:-1].set(images[:, 2:] - images[:, :-2])
    g_col = jnp.zeros_like(images).at[:, :, 1:-1].set(images[:, :, 2:] - images[:, :, :-2])
    return g_row, g_col


def _l2_hys(histograms: jax.Array) -> jax.Array:
    normalize = lambda h: h / jnp.sqrt(jnp.sum(h ** 2, axis=-1, keepdims=True) + _EPS ** 2)  # noqa: E731
    return normalize(jnp.minimum(normalize(histograms), 0.2))


def hog_cells(images: jax.Array, *, cell_size: int, orientations: int = 9) -> jax.Array:
    """L2-Hys-normalised HOG histogram of every cell.

    Args:
      images: (B, H, W, C) floats; H and W multiples of `cell_size` (skimage drops a ragged border instead).
      cell_size: the side of a square cell in pixels (`pixels_per_cell`).
      orientations: bins of the unsigned orientation [0, 180) degrees.
    Returns:
      (B, H / cell_size, W / cell_size, orientations) float32, each cell's histogram of unit L2 norm (or zero).
    """
    batch, height, width, _ = images.shape
    if height % cell_size or width % cell_size:
        raise ValueError(f"cell_size: {cell_size} does not divide the {height}x{width} images")
    g_row, g_col = _central_gradients(images.astype(jnp.float32))
    magnitudes = jnp.hypot(g_row, g_col)
    strongest = jnp.argmax(magnitudes, axis=-1)[..., None]  # first channel on ties, as skimage
    pick = lambda values: jnp.take_along_axis(values, strongest, axis=-1)[..., 0]  # noqa: E731
    g_row, g_col, magnitude = pick(g_row), pick(g_col), pick(magnitudes)
    angle = jnp.remainder(jnp.rad2deg(jnp.arctan2(g_row, g_col)), 180.0)
    bins = jnp.clip(jnp.floor(angle / (180.0 / orientations)).astype(jnp.int32), 0, orientations - 1)
    votes = jax.nn.one_hot(bins, orientations, dtype=jnp.float32) * magnitude[..., None]
    cells = votes.reshape(batch, height // cell_size, cell_size, width // cell_size, cell_size, orientations)
    return _l2_hys(cells.mean(axis=(2, 4)))


class HOG(nn.Module):
    """HOG as a frozen encoder: images (B, H, W, C) -> tokens (B, (H / p) * (W / p), orientations), row-major
    over the cell grid, with the interface `jaxrep.align.targets.encoder_targets` expects of a ViT (no params).

    Attributes:
      patch_size: cell side in pixels, the token grid's patch.
      orientations: histogram bins, the token width.
      dtype: unused (HOG is computed in float32); present so encoders share `clone(dtype=...)`.
    """

    patch_size: int = 4
    orientations: int = 9
    dtype: jnp.dtype = jnp.float32

    @property
    def width(self) -> int:
        return self.orientations

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        cells = hog_cells(images, cell_size=self.patch_size, orientations=self.orientations)
        return cells.reshape(cells.shape[0], -1, self.orientations)

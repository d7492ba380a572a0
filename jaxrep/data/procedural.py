"""Procedural image datasets with ground-truth factors, generated deterministically from an index.

`DSprites` follows the definition of dSprites (Matthey et al. 2017): 3 shapes (square, ellipse, heart) x
6 scales (linspace(0.5, 1, 6)) x 40 orientations (linspace(0, 2 pi, 40)) x 32 x 32 positions
(linspace(0, 1, 32)), 64x64 binary images, factor order as in the original `latents_classes`. The original
sprites are bitmaps; here they are rasterised from implicit curves, so pixels differ but factors, ranges and
the index layout (mixed radix, last factor fastest) are the same. `ColoredShapes` is a small coloured variant
(32x32x3, label = shape) cheap enough for CPU training.

Images are rendered with 4x4 supersampling (coverage in [0, 1]); `DSprites` thresholds at 0.5 to stay binary.
No files are read or written.
"""

from __future__ import annotations

import numpy as np

SHAPES = ("square", "ellipse", "heart")

# Colours of `ColoredShapes` (RGB in [0, 1]), chosen to be distinguishable.
PALETTE = np.array([
    [0.95, 0.25, 0.20],  # red
    [0.25, 0.75, 0.30],  # green
    [0.25, 0.45, 0.95],  # blue
    [0.98, 0.85, 0.20],  # yellow
    [0.85, 0.35, 0.90],  # magenta
    [0.20, 0.85, 0.90],  # cyan
])


def _shape_mask(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in the shape's own frame, where the shape fits in [-1, 1]^2."""
    if shape == 0:
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    if shape == 1:
        return (u / 1.0) ** 2 + (v / 0.55) ** 2 <= 1.0
    # Heart: (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, scaled to [-1, 1] and pointing down (image rows grow down).
    x, y = u * 1.15, -v * 1.15 + 0.15
    return (x**2 + y**2 - 1.0) ** 3 - x**2 * y**3 <= 0.0


def render_shapes(shape: int, scale: float, angle: float, pos_x: float, pos_y: float, *, size: int,
                  max_radius: float, supersample: int = 4) -> np.ndarray:
    """Coverage image (size, size) float32 in [0, 1] of one shape.

    pos_x, pos_y in [0, 1] place the centre between `max_radius` and `size - max_radius` pixels; the
    shape's half-extent is `scale * max_radius` pixels; angle in radians (counter-clockwise).
    """
    offsets = (np.arange(supersample) + 0.5) / supersample
    coords = (np.arange(size)[:, None] + offsets[None]).reshape(-1)
    rows, cols = np.meshgrid(coords, coords, indexing="ij")
    centre_x = max_radius + pos_x * (size - 2 * max_radius)
    centre_y = max_radius + pos_y * (size - 2 * max_radius)
    dx, dy = (cols - centre_x) / (scale * max_radius), (rows - centre_y) / (scale * max_radius)
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    mask = _shape_mask(shape, u, v).astype(np.float32)
    return mask.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


class _FactorDataset:
    """Random-access source over the Cartesian product of factor values (mixed radix, last fastest)."""

    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()

    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes))

    def factors(self, index: int) -> np.ndarray:
        """Factor classes (num_factors,) int32 of image `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {type(self).__name__} of size {len(self)}")
        return np.array(np.unravel_index(index, self.factor_sizes), dtype=np.int32)

    def index(self, factors: np.ndarray) -> int:
        return int(np.ravel_multi_index(tuple(np.asarray(factors)), self.factor_sizes))


class DSprites(_FactorDataset):
    """dSprites: {"image": (64, 64, 1) float32 in {-1, 1}, "label": shape, "factors": (5,) int32}."""

    factor_names = ("shape", "scale", "orientation", "pos_x", "pos_y")
    factor_sizes = (3, 6, 40, 32, 32)
    image_shape = (64, 64, 1)
    num_classes = 3

    def __getitem__(self, index: int) -> dict:
        f = self.factors(int(index))
        coverage = render_shapes(
            int(f[0]), np.linspace(0.5, 1.0, 6)[f[1]], np.linspace(0, 2 * np.pi, 40)[f[2]],
            np.linspace(0, 1, 32)[f[3]], np.linspace(0, 1, 32)[f[4]], size=64, max_radius=10.0)
        image = np.where(coverage >= 0.5, 1.0, -1.0).astype(np.float32)[..., None]
        return {"image": image, "label": np.int32(f[0]), "factors": f}


class ColoredShapes(_FactorDataset):
    """Coloured upright shapes on black: {"image": (32, 32, 3) float32 in [-1, 1], "label": shape, "factors": (5,)}.

    Factors: shape (3), colour (6), scale (linspace(0.7, 1, 3)), horizontal and vertical position (5 each).
    Shapes are not rotated, so each class has one silhouette: coarse enough that a tiny SiT learns
    recognisable shapes in minutes on a CPU.
    """

    factor_names = ("shape", "color", "scale", "pos_x", "pos_y")
    factor_sizes = (3, 6, 3, 5, 5)
    image_shape = (32, 32, 3)
    num_classes = 3

    def __getitem__(self, index: int) -> dict:
        f = self.factors(int(index))
        coverage = render_shapes(int(f[0]), np.linspace(0.7, 1.0, 3)[f[2]], 0.0, np.linspace(0, 1, 5)[f[3]],
                                 np.linspace(0, 1, 5)[f[4]], size=32, max_radius=9.0)
        image = coverage[..., None] * PALETTE[f[1]][None, None]
        return {"image": (2.0 * image - 1.0).astype(np.float32), "label": np.int32(f[0]), "factors": f}

"""HOG tokens: parity with scikit-image's `hog` (the `ref` extra), and their use as a REPA target encoder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.align.encoder import make_target_fn
from jaxrep.align.hog import HOG, hog_cells
from jaxrep.weights.encoder import load_encoder

skimage_feature = pytest.importorskip("skimage.feature")


def skimage_hog(image: np.ndarray, cell_size: int, orientations: int) -> np.ndarray:
    """(H / c, W / c, orientations) from `skimage.feature.hog` with one cell per block."""
    blocks = skimage_feature.hog(image, orientations=orientations, pixels_per_cell=(cell_size, cell_size),
                                 cells_per_block=(1, 1), block_norm="L2-Hys", feature_vector=False,
                                 channel_axis=-1 if image.ndim == 3 else None)
    return blocks[:, :, 0, 0, :]


def garment_like(rng: np.random.Generator, side: int) -> np.ndarray:
    """uint8 images with flat regions, edges and noise: integer gradients, many zero-gradient pixels."""
    rows, cols = np.mgrid[:side, :side]
    image = np.where((rows - side / 2) ** 2 / 60 + (cols - side / 2) ** 2 / 30 < side / 3, 180, 20)
    return np.clip(image + rng.integers(-30, 30, (side, side)) * (rng.random((side, side)) < 0.3), 0, 255)


@pytest.mark.parametrize("cell_size, orientations", [(4, 9), (8, 6)])
def test_matches_skimage_on_grayscale_uint8(cell_size, orientations):
    rng = np.random.default_rng(0)
    images = np.stack([garment_like(rng, 32) for _ in range(3)] + [rng.integers(0, 256, (32, 32))]).astype(np.uint8)
    ours = hog_cells(jnp.asarray(images, jnp.float32)[..., None], cell_size=cell_size, orientations=orientations)
    for image, cells in zip(images, np.asarray(ours)):
        np.testing.assert_allclose(cells, skimage_hog(image.astype(np.float64), cell_size, orientations),
                                   atol=2e-6)


def test_matches_skimage_on_colour_floats():
    # Per pixel the channel of largest gradient magnitude decides the orientation and the vote.
    images = np.random.default_rng(1).normal(size=(2, 16, 24, 3))
    ours = hog_cells(jnp.asarray(images, jnp.float32), cell_size=4, orientations=9)
    for image, cells in zip(images, np.asarray(ours)):
        np.testing.assert_allclose(cells, skimage_hog(image, 4, 9), atol=2e-5)


def test_cells_are_unit_and_invariant_to_contrast_and_brightness():
    images = jnp.asarray(np.random.default_rng(2).uniform(size=(2, 16, 16, 1)), jnp.float32)
    cells = hog_cells(images, cell_size=4)
    np.testing.assert_allclose(jnp.linalg.norm(cells, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(hog_cells(3.0 * images + 7.0, cell_size=4), cells, atol=1e-5)
    with pytest.raises(ValueError, match="cell_size: 5 does not divide"):
        hog_cells(images, cell_size=5)


def test_hog_encoder_gives_targets_on_the_sit_grid():
    encoder = load_encoder("hog", "", image_size=32, cell_size=4)
    assert isinstance(encoder.model, HOG) and encoder.width == 9 and encoder.grid_size == 8
    images = jnp.asarray(np.random.default_rng(3).integers(0, 256, (2, 32, 32, 1)), jnp.uint8)
    targets = make_target_fn(encoder, grid_hw=(8, 8))(encoder.params, images)
    assert targets.shape == (2, 64, 9)
    # The preprocessing (to RGB, ImageNet mean/std) rescales each channel, which L2-Hys normalises away.
    expected = hog_cells(images.astype(jnp.float32), cell_size=4).reshape(2, 64, 9)
    np.testing.assert_allclose(targets, expected, atol=1e-4)
    grads = jax.grad(lambda x: make_target_fn(encoder, grid_hw=(8, 8))({}, x).sum())(images.astype(jnp.float32))
    np.testing.assert_array_equal(grads, 0.0)  # targets are under stop_gradient

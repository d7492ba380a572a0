"""Transformation sequences from dSprites factors: the official subgrid, cyclic shifts, the enumeration."""

import numpy as np
import pytest

from jaxrep.data import DSprites
from jaxrep.data.traversal_sequences import DSpritesGrid, TransformationSequences, shifted_factors

TINY = dict(starts=(0, 0, 0, 0, 0), stop=30, strides=(1, 3, 10, 8, 8))


def test_official_subgrid_sizes():
    grid = DSpritesGrid()
    assert grid.factor_sizes == (3, 5, 8, 8, 8) and len(grid) == 7680
    np.testing.assert_array_equal(grid.factor_values[1], np.arange(1, 6))
    np.testing.assert_array_equal(grid.factor_values[3], np.arange(0, 30, 4))


def test_grid_images_are_the_dsprites_images_of_the_kept_classes():
    grid, dsprites = DSpritesGrid(**TINY), DSprites()
    index = grid.index(np.array([2, 1, 2, 3, 1]))
    item = grid[index]
    np.testing.assert_array_equal(item["factors"], [2, 1, 2, 3, 1])
    original = dsprites[dsprites.index([2, 3, 20, 24, 8])]["image"]
    np.testing.assert_array_equal(item["image"], original)
    np.testing.assert_array_equal(grid[index]["image"], original)  # from the cache


def test_shifted_factors_wrap_around():
    sizes = (3, 2, 3, 4, 4)
    np.testing.assert_array_equal(shifted_factors(np.array([2, 1, 0, 3, 0]), 0, 2, sizes), [1, 1, 0, 3, 0])
    np.testing.assert_array_equal(shifted_factors(np.array([2, 1, 0, 3, 0]), 3, 1, sizes), [2, 1, 0, 0, 0])


def test_sequences_enumerate_every_start_factor_and_step():
    grid = DSpritesGrid(**TINY)
    sequences = TransformationSequences(grid, ("pos_x", "scale"), num_steps=4)
    assert len(sequences) == len(grid) * 2 * 3
    seen = set()
    for index in range(0, len(sequences), 7):
        item = sequences[index]
        k, t = int(item["potential"]), int(item["time"])
        factor = (3, 1)[k]
        seen.add((k, t))
        np.testing.assert_array_equal(item["image"], grid.image(grid.index(item["factors"])))
        for image, shift in ((item["image_t"], t), (item["image_next"], t + 1)):
            expected = shifted_factors(item["factors"], factor, shift, grid.factor_sizes)
            np.testing.assert_array_equal(image, grid.image(grid.index(expected)))
    assert seen == {(k, t) for k in range(2) for t in range(3)}


def test_bad_arguments_raise():
    grid = DSpritesGrid(**TINY)
    with pytest.raises(ValueError, match="unknown factors"):
        TransformationSequences(grid, ("colour",), num_steps=3)
    with pytest.raises(ValueError, match="num_steps"):
        TransformationSequences(grid, ("shape",), num_steps=1)
    with pytest.raises(ValueError, match="empty subgrid"):
        DSpritesGrid(starts=(0, 0, 0, 0, 0), stop=0, strides=(1, 1, 1, 1, 1))

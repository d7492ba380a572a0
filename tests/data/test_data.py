import jax
import numpy as np
import pytest

from jaxrep.data import ArraySource, ColoredShapes, DSprites, make_dataset, make_iterator, shuffle_seed
from jaxrep.data.procedural import render_shapes


def test_dsprites_definition_and_index_layout():
    ds = DSprites()
    assert len(ds) == 3 * 6 * 40 * 32 * 32 == 737280
    example = ds[123457]
    np.testing.assert_array_equal(example["factors"], np.unravel_index(123457, (3, 6, 40, 32, 32)))
    assert ds.index(example["factors"]) == 123457
    assert example["image"].shape == (64, 64, 1)
    assert set(np.unique(example["image"])) <= {-1.0, 1.0}
    with pytest.raises(IndexError, match="^index 737280 out of range for DSprites of size 737280"):
        ds[len(ds)]


def test_dsprites_is_deterministic_and_factors_act_as_named():
    ds = DSprites()
    a, b = ds[5000], ds[5000]
    np.testing.assert_array_equal(a["image"], b["image"])
    base = np.array([0, 5, 0, 10, 10])
    img = ds[ds.index(base)]["image"][..., 0] > 0
    right = ds[ds.index(base + [0, 0, 0, 10, 0])]["image"][..., 0] > 0
    lower = ds[ds.index(base + [0, 0, 0, 0, 10])]["image"][..., 0] > 0
    smaller = ds[ds.index(base - [0, 5, 0, 0, 0])]["image"][..., 0] > 0
    centroid = lambda m: np.argwhere(m).mean(0)  # (row, col)
    assert centroid(right)[1] > centroid(img)[1] + 5 and abs(centroid(right)[0] - centroid(img)[0]) < 1
    assert centroid(lower)[0] > centroid(img)[0] + 5 and abs(centroid(lower)[1] - centroid(img)[1]) < 1
    assert smaller.sum() < 0.5 * img.sum()


def test_shapes_have_expected_areas():
    # Square of half-side 0.8 R: area (1.6 R)^2; ellipse with axes R and 0.55 R: pi * 0.55 R^2.
    r = 10.0
    square = render_shapes(0, 1.0, 0.0, 0.5, 0.5, size=64, max_radius=r).sum()
    ellipse = render_shapes(1, 1.0, 0.0, 0.5, 0.5, size=64, max_radius=r).sum()
    np.testing.assert_allclose(square, (1.6 * r) ** 2, rtol=0.03)
    np.testing.assert_allclose(ellipse, np.pi * 0.55 * r**2, rtol=0.03)


def test_colored_shapes_label_is_shape_and_colour_is_palette():
    ds = ColoredShapes()
    example = ds[ds.index([2, 3, 2, 2, 2])]
    assert example["label"] == 2 and example["image"].shape == (32, 32, 3)
    assert example["image"].min() >= -1.0 and example["image"].max() <= 1.0
    centre = (example["image"][16, 16] + 1) / 2
    np.testing.assert_allclose(centre / centre.max(), [0.98, 0.85, 0.20] / np.float32(0.98), atol=0.02)


def test_array_source_memory_maps_npy_and_scales_uint8(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", np.arange(10, dtype=np.int32))
    source = ArraySource(str(tmp_path / "x.npy"), str(tmp_path / "y.npy"))
    assert isinstance(source._images, np.memmap)
    np.testing.assert_allclose(source[3]["image"], images[3] / 127.5 - 1.0, atol=1e-6)
    assert source[3]["label"] == 3
    np.savez(tmp_path / "d.npz", images=images.astype(np.float32), labels=np.arange(10))
    assert ArraySource(str(tmp_path / "d.npz"))[7]["label"] == 7
    with pytest.raises(FileNotFoundError, match="data.path"):
        ArraySource(str(tmp_path / "missing.npy"))


def _labels(source_len, **kw):
    class Source:
        def __len__(self):
            return source_len

        def __getitem__(self, i):
            return {"image": np.full((1,), i, np.float32), "label": np.int32(i)}

    return make_dataset(Source(), **kw)


def test_pipeline_epochs_cover_the_data_and_state_resumes():
    dataset = _labels(12, global_batch_size=4, root_key=jax.random.key(0), process_index=0, process_count=1)
    iterator = make_iterator(dataset)
    epoch = np.concatenate([next(iterator)["label"] for _ in range(3)])
    assert sorted(epoch) == list(range(12))
    state = iterator.get_state()
    expected = [next(iterator)["label"] for _ in range(4)]
    resumed = make_iterator(dataset, state)
    np.testing.assert_array_equal([next(resumed)["label"] for _ in range(4)], expected)
    assert not np.array_equal(np.concatenate(expected[:3]), epoch)  # reshuffled next epoch


def test_data_order_is_a_function_of_the_root_key_alone():
    order = lambda key: np.concatenate([next(make_iterator(_labels(64, global_batch_size=64, root_key=key,  # noqa: E731
                                                                      process_index=0, process_count=1)))["label"]])
    np.testing.assert_array_equal(order(jax.random.key(3)), order(jax.random.key(3)))
    assert not np.array_equal(order(jax.random.key(3)), order(jax.random.key(4)))
    # The order comes from a stream of its own, so the integer seed is not reused as grain's shuffle seed.
    assert 0 <= shuffle_seed(jax.random.key(3)) < 2**31 and shuffle_seed(jax.random.key(3)) != 3
    assert shuffle_seed(jax.random.key(3)) == shuffle_seed(jax.random.key(3))


def test_process_shards_differ_and_cover_the_global_batch():
    key = jax.random.key(1)
    shards = [make_iterator(_labels(16, global_batch_size=8, root_key=key, process_index=i, process_count=2))
              for i in range(2)]
    first = [next(it)["label"] for it in shards]
    assert all(len(f) == 4 for f in first)
    assert not set(first[0]) & set(first[1])
    assert set(first[0]) <= set(range(0, 16, 2)) and set(first[1]) <= set(range(1, 16, 2))
    with pytest.raises(ValueError, match="batch_size"):
        _labels(16, global_batch_size=7, root_key=jax.random.key(0), process_index=0, process_count=2)

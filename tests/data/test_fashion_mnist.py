"""Fashion-MNIST from IDX files the test writes itself: the format's header, gzip, padding, splits and the one-line
message for a missing dataset; the pipeline keeps per-host shards and resumable state on it."""

import gzip
import os
import struct
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import diffusion as diffusion_configs
from jaxrep.data import make_dataset, make_iterator
from jaxrep.data.fashion_mnist import FashionMNIST, MissingDatasetError, read_idx
from jaxrep.experiments import diffusion as diffusion_experiment


def _write_idx(path, array, compress):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)


def _fake_dataset(directory, train=12, test=4, compress=True):
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    parts = {}
    for prefix, count in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        _write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
        _write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
        parts[prefix] = (images, labels)
    return parts


def test_read_idx_decodes_the_header_and_big_endian_data(tmp_path):
    values = np.arange(24, dtype=np.int32).reshape(2, 3, 4) * 1000
    _write_idx(tmp_path / "x.idx", values, compress=False)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "x.idx")), values)
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="bad.idx: not an IDX file"):
        read_idx(str(tmp_path / "bad.idx"))
    (tmp_path / "short.idx").write_bytes((tmp_path / "x.idx").read_bytes()[:-8])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(str(tmp_path / "short.idx"))


@pytest.mark.parametrize("compress", [True, False])
def test_source_pads_scales_and_concatenates_the_splits(tmp_path, compress):
    parts = _fake_dataset(tmp_path, compress=compress)
    source = FashionMNIST(str(tmp_path), split="all")
    assert len(source) == 16 and source.image_shape == (32, 32, 1)
    example = source[13]  # test image 1
    expected = np.pad(parts["t10k"][0][1], 2).astype(np.float32) / 127.5 - 1.0
    np.testing.assert_array_equal(example["image"][..., 0], expected)
    assert example["label"] == parts["t10k"][1][1] and example["image"][0, 0, 0] == -1.0
    assert len(FashionMNIST(str(tmp_path), split="test")) == 4
    images, labels = source.first(14)  # the arrays __getitem__ gives, stacked
    np.testing.assert_array_equal(images, np.stack([source[i]["image"] for i in range(14)]))
    np.testing.assert_array_equal(labels, [source[i]["label"] for i in range(14)])


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(MissingDatasetError, match="apt-get install dataset-fashion-mnist"):
        FashionMNIST(str(tmp_path))


def test_pipeline_shards_per_host_and_resumes(tmp_path):
    _fake_dataset(tmp_path)
    source = FashionMNIST(str(tmp_path))
    build = lambda index: make_dataset(source, global_batch_size=4, root_key=jax.random.key(1),  # noqa: E731
                                       process_index=index, process_count=2)
    shards = [make_iterator(build(i)) for i in range(2)]
    first = [next(shard) for shard in shards]
    assert not set(first[0]["label"].tolist()) & set(first[1]["label"].tolist())  # disjoint host shards
    state = shards[0].get_state()
    following = next(shards[0])
    resumed = make_iterator(build(0), state)
    np.testing.assert_array_equal(next(resumed)["image"], following["image"])


def test_diffusion_builds_a_grey_32px_sit_on_it_and_the_cli_names_a_missing_dataset(tmp_path):
    (tmp_path / "data").mkdir()
    _fake_dataset(tmp_path / "data")
    config = diffusion_configs.get_config("cpu")
    config.update_from_flattened_dict({"data.source": "fashion_mnist", "data.path": str(tmp_path / "data"),
                                       "data.num_classes": 10, "num_devices": 1, "batch_size": 4,
                                       "model.patch_size": 8, "model.hidden_size": 32, "model.depth": 1,
                                       "model.num_heads": 2})
    experiment = diffusion_experiment.build_experiment(config)
    assert (experiment.model.input_size, experiment.model.in_channels, experiment.model.num_classes) == (32, 1, 10)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-m", "train.diffusion", "--config=configs/diffusion.py:cpu",
                             f"--workdir={tmp_path / 'run'}", "--config.data.source=fashion_mnist",
                             f"--config.data.path={tmp_path / 'missing'}"], cwd=repo, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: data.path: no Fashion-MNIST file")

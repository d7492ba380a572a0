"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; MIT licence) from its standard IDX files, for offline real-data runs.

Debian's package `dataset-fashion-mnist` installs the four files (`{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`)
in `/usr/share/datasets/fashion-mnist`; any directory holding them, gzipped or not, works. Images are 28 x 28
grey; the source pads them with black to 32 x 32 (two pixels a side) so that patch sizes 2, 4 and 8 divide them.
"""

from __future__ import annotations

import gzip

import numpy as np

from jaxrep import files

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_SPLITS = {"train": ("train",), "test": ("t10k",), "all": ("train", "t10k")}
# IDX type codes (the third byte of the magic number) -> big-endian NumPy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class MissingDatasetError(FileNotFoundError):
    """The IDX files are not where the config says; the message says how to get them."""


def read_idx(path: str) -> np.ndarray:
    """An IDX file (LeCun's MNIST format: 2 zero bytes, a type code, the number of dimensions, one big-endian uint32
    per dimension, then the data) as a NumPy array; `.gz` files are decompressed."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as file:
        data = file.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic bytes {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int(size) for size in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: {len(data)} bytes, the header {shape} needs {expected} (truncated?)")
    return np.frombuffer(data, dtype, offset=4 + 4 * ndim).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: str, stem: str) -> str:
    for name in (f"{stem}.gz", stem):
        if files.path(files.join(directory, name)).is_file():
            return files.local_copy(files.join(directory, name))
    raise MissingDatasetError(
        f"data.path: no Fashion-MNIST file {stem}(.gz) in {directory!r}; install it with `apt-get install "
        f"dataset-fashion-mnist` (as root, or with sudo; files in {DEBIAN_DIR}) or put the four IDX files of "
        "github.com/zalandoresearch/fashion-mnist there")


class FashionMNIST:
    """Random-access source: {"image": (32, 32, 1) float32 in [-1, 1], "label": int32 class in [0, 10),
    "factors": (1,) int32, the label again} (`factors`/`factor_sizes`: the class is the one factor the
    factor-trained encoder and eval net learn, `jaxrep.experiments.factor_training`).

    Args:
      directory: folder with the IDX files (default: Debian's).
      split: "train" (60,000), "test" (10,000) or "all" (70,000, train first).
    """

    image_shape = (32, 32, 1)
    num_classes = len(CLASSES)
    factor_sizes = (len(CLASSES),)
    factor_names = ("class",)

    def __init__(self, directory: str = DEBIAN_DIR, split: str = "train"):
        if split not in _SPLITS:
            raise ValueError(f"data.split: must be one of {tuple(_SPLITS)}, got {split!r}")
        images, labels = [], []
        for prefix in _SPLITS[split]:
            images.append(read_idx(_find(directory, f"{prefix}-images-idx3-ubyte")))
            labels.append(read_idx(_find(directory, f"{prefix}-labels-idx1-ubyte")))
        self._images, self._labels = np.concatenate(images), np.concatenate(labels).astype(np.int32)
        if self._images.shape[1:] != (28, 28) or len(self._images) != len(self._labels):
            raise ValueError(f"data.path: {directory!r} holds images {self._images.shape} and labels "
                             f"{self._labels.shape}, not Fashion-MNIST's (N, 28, 28) and (N,)")

    def __len__(self) -> int:
        return len(self._labels)

    def uint8_image(self, index: int) -> np.ndarray:
        """(32, 32, 1) uint8, the 28 x 28 image padded with black."""
        return np.pad(self._images[int(index)], 2)[..., None]

    def first(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(images (count, 32, 32, 1) float32 in [-1, 1], labels (count,) int32) of the first `count` examples,
        as `__getitem__` gives them (linear probes, evaluation sets)."""
        images = np.pad(self._images[:count], ((0, 0), (2, 2), (2, 2)))[..., None]
        return images.astype(np.float32) / 127.5 - 1.0, self._labels[:count].copy()

    def __getitem__(self, index: int) -> dict:
        image = self.uint8_image(index).astype(np.float32) / 127.5 - 1.0
        label = self._labels[int(index)]
        return {"image": image, "label": label, "factors": np.array([label], np.int32)}

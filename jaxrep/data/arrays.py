"""Users' own data: images or pre-encoded latents plus labels from .npy / .npz files."""

from __future__ import annotations

import numpy as np

from jaxrep import files


class ArraySource:
    """Random-access source over arrays on disk: {"image": (H, W, C) float32, "label": int32}.

    `.npy` files are memory-mapped (nothing is read until indexed); `.npz` archives cannot be mapped and
    are loaded lazily per array (store large data as `.npy`). uint8 images are scaled to [-1, 1]; float
    arrays (e.g. VAE latents, already scaled) are passed through. Files are read with
    `allow_pickle=False`, so no object arrays are ever unpickled.

    Args:
      images: path to a (N, H, W, C) `.npy`, or to an `.npz` holding it under `images_key`.
      labels: path to a (N,) `.npy`, or None to read `labels_key` from the same `.npz`, or to use label 0.
    """

    def __init__(self, images: str, labels: str | None = None, *, images_key: str = "images",
                 labels_key: str = "labels"):
        self._images = self._load(images, images_key)
        if labels is not None:
            self._labels = self._load(labels, labels_key)
        elif images.endswith(".npz") and labels_key in (archive := np.load(files.local_copy(images),
                                                                           allow_pickle=False)).files:
            self._labels = archive[labels_key]
        else:
            self._labels = np.zeros((len(self._images),), np.int32)
        if self._images.ndim != 4:
            raise ValueError(f"data.path: images must be (N, H, W, C), got shape {self._images.shape}")
        if len(self._labels) != len(self._images):
            raise ValueError(f"data.labels_path: {len(self._labels)} labels for {len(self._images)} images")

    @staticmethod
    def _load(path: str, key: str) -> np.ndarray:
        if not files.path(path).exists():
            raise FileNotFoundError(f"data.path: no such file {path!r}")
        path = files.local_copy(path)  # memory-mapped: a file in a bucket is copied to this host first
        if path.endswith(".npy"):
            return np.load(path, mmap_mode="r", allow_pickle=False)
        archive = np.load(path, allow_pickle=False)
        if key not in archive.files:
            raise KeyError(f"data.path: {path!r} has no array {key!r} (has {archive.files})")
        return archive[key]

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self._images.shape[1:])

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> dict:
        image = np.asarray(self._images[int(index)])
        if image.dtype == np.uint8:
            image = image.astype(np.float32) / 127.5 - 1.0
        return {"image": image.astype(np.float32), "label": np.int32(self._labels[int(index)])}

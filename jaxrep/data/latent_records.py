"""Sharded SD-VAE latent datasets: ArrayRecord shards of (posterior moments, label, image bytes) plus a manifest.

Written by `train.prepare_latents`, read per host by the grain pipeline through `LatentRecordSource`. A dataset
directory holds

- `shard-SSSSS-of-NNNNN.array_record`: records in the global (sorted-path) order of the source images, each a
  msgpack map {"mean": (h, w, c) float32, "std": (h, w, c) float32, "label": int, "image": PNG/JPEG bytes of
  the ADM-cropped image}; the moments are the SD-VAE posterior N(mean, std^2) of the *unscaled* latent, as
  REPA's preprocessing stores them (training draws z = (mean + std * eps) * scaling_factor every step);
- `shard-SSSSS.json`: that shard's record count, byte size, SHA-256 and the skipped (unreadable) images;
- `manifest.json`: the whole dataset: counts, class names, shapes, the VAE used and every shard's checksum.

msgpack (through flax.serialization) restores only plain arrays, numbers and bytes: nothing is unpickled.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from flax import serialization

from jaxrep import files
from jaxrep.data.images import decode_image

MANIFEST = "manifest.json"
FORMAT = "jaxrep-latent-records-v1"


class DatasetError(ValueError):
    """A prepared dataset that is missing, incomplete or damaged; the message names the file."""


def shard_name(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}.array_record"


def shard_info_name(index: int) -> str:
    return f"shard-{index:05d}.json"


def encode_record(mean: np.ndarray, std: np.ndarray, label: int, image: bytes) -> bytes:
    return serialization.msgpack_serialize({"mean": np.asarray(mean, np.float32), "std": np.asarray(std, np.float32),
                                            "label": int(label), "image": bytes(image)})


def decode_record(data: bytes) -> dict[str, Any]:
    return serialization.msgpack_restore(data)


def read_manifest(directory: str) -> dict:
    path = files.join(directory, MANIFEST)
    if not files.path(path).is_file():
        raise DatasetError(f"data.path: no {MANIFEST} in {directory!r}; prepare the dataset with "
                           "`python -m train.prepare_latents` (an unfinished preparation has no manifest yet)")
    try:
        manifest = json.loads(files.path(path).read_text())
    except ValueError as error:
        raise DatasetError(f"{path}: not valid JSON ({error})") from None
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def verify_dataset(directory: str, *, checksums: bool = True) -> dict:
    """The manifest, after checking every shard exists with its recorded size (and SHA-256 when `checksums`);
    DatasetError naming the first damaged shard."""
    manifest = read_manifest(directory)
    for shard in manifest["shards"]:
        path = files.join(directory, shard["file"])
        if not files.path(path).is_file():
            raise DatasetError(f"{path}: shard missing from the prepared dataset")
        if files.file_size(path) != shard["bytes"]:
            raise DatasetError(f"{path}: {files.file_size(path)} bytes, the manifest records {shard['bytes']} "
                               "(truncated or rewritten)")
        if checksums and files.file_sha256(path) != shard["sha256"]:
            raise DatasetError(f"{path}: SHA-256 differs from the manifest (damaged)")
    return manifest


class LatentRecordSource:
    """Random-access source over a prepared dataset: {"image": posterior mean (h, w, c), "latent_std": (h, w, c),
    "label": int32}, plus "encoder_image" (H, W, 3) uint8 decoded from the stored bytes when `with_images`.

    The image bytes are decoded inside `__getitem__`, i.e. in the grain pipeline's worker processes when it runs
    with workers. Opening checks the manifest and every shard's size; `verify_dataset` also checks checksums.
    ArrayRecord reads local files only: the shards of a dataset in a bucket are copied to this host's disk first
    (`jaxrep.files.local_copy`, once).
    """

    def __init__(self, directory: str, *, with_images: bool = False):
        if not files.path(directory).is_dir():
            raise DatasetError(f"data.path: no such directory {directory!r}")
        self.directory = directory
        self.manifest = verify_dataset(directory, checksums=False)
        self.with_images = with_images
        self._paths = [files.local_copy(files.join(directory, shard["file"])) for shard in self.manifest["shards"]]
        self._records = None  # opened lazily, so the source pickles cheaply into grain's workers

    def _reader(self):
        if self._records is None:
            import grain

            self._records = grain.sources.ArrayRecordDataSource(self._paths)
        return self._records

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_records": None}

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The latent shape (h, w, c) the model trains on."""
        return tuple(self.manifest["latent_shape"])

    @property
    def pixel_shape(self) -> tuple[int, ...]:
        return (self.manifest["image_size"], self.manifest["image_size"], 3)

    def __len__(self) -> int:
        return int(self.manifest["num_records"])

    def record(self, index: int) -> dict[str, Any]:
        return decode_record(self._reader()[int(index)])

    def pixels(self, index: int) -> np.ndarray:
        """The cropped uint8 image (H, W, 3) behind record `index` (reference images for FID)."""
        return decode_image(self.record(index)["image"])

    def __getitem__(self, index: int) -> dict:
        record = self.record(index)
        example = {"image": np.asarray(record["mean"], np.float32), "latent_std": np.asarray(record["std"], np.float32),
                   "label": np.int32(record["label"])}
        if self.with_images:
            example["encoder_image"] = decode_image(record["image"])
        return example

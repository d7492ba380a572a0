"""Image files for latent preparation: listing a dataset folder, reading images with named errors, ADM's centre
crop, and PNG/JPEG bytes.

Layouts (`list_images`), both as REPA's `preprocessing/dataset_tools.py` reads them:
- an ImageNet-style class-folder tree `root/<class>/<...>/<image>`: labels are the indices of the sorted
  top-level folder names (torchvision's `ImageFolder` order);
- a folder of images with a label file: EDM's `dataset.json` (`{"labels": [[relative/path, label], ...]}`),
  found in the folder or passed as `labels_path`.
Images are listed recursively and sorted by relative path, so every process derives the same global order.
"""

from __future__ import annotations

import io
import json
from typing import NamedTuple

import numpy as np
from PIL import Image

from jaxrep import files
from jaxrep.config_checks import ConfigError

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


class ImageReadError(ValueError):
    """An image file that cannot be decoded; the message starts with its path."""


class ImageEntry(NamedTuple):
    path: str  # relative to the dataset root, '/'-separated
    label: int


def list_images(root: str, labels_path: str = "") -> tuple[list[ImageEntry], list[str]]:
    """(entries sorted by path, class names) of the dataset at `root` (see the module docstring).

    Class names are the sorted top-level folder names for a class-folder tree, and empty for a label file.
    """
    if not files.path(root).is_dir():
        raise ConfigError(f"data_dir: no such directory {root!r}")
    paths = sorted(name for name in files.files_under(root) if name.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise ConfigError(f"data_dir: no images ({', '.join(IMAGE_EXTENSIONS)}) under {root!r}")
    labels_path = labels_path or (files.join(root, "dataset.json")
                                  if files.path(files.join(root, "dataset.json")).is_file() else "")
    if labels_path:
        labels = _read_label_file(labels_path)
        missing = [path for path in paths if path not in labels]
        if missing:
            raise ConfigError(f"labels_path: {labels_path!r} has no label for {len(missing)} images, e.g. "
                             f"{missing[:3]}")
        return [ImageEntry(path, labels[path]) for path in paths], []
    top_level = [path.split("/")[0] if "/" in path else "" for path in paths]
    classes = sorted(set(top_level))
    if "" in classes:
        raise ConfigError(f"data_dir: {root!r} has images outside class folders and no dataset.json; give "
                         "labels_path or put every image in a class folder")
    index = {name: i for i, name in enumerate(classes)}
    return [ImageEntry(path, index[name]) for path, name in zip(paths, top_level)], classes


def _read_label_file(path: str) -> dict[str, int]:
    if not files.path(path).is_file():
        raise ConfigError(f"labels_path: no such file {path!r}")
    try:
        pairs = json.loads(files.path(path).read_text())["labels"]
        return {str(name): int(label) for name, label in pairs}
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"labels_path: {path!r} is not an EDM dataset.json "
                         f"({{\"labels\": [[path, label], ...]}}): {error}") from None


def read_rgb(path: str) -> np.ndarray:
    """(H, W, 3) uint8 of the image file at `path`; ImageReadError naming the path if it cannot be decoded."""
    try:
        return decode_image(files.read_bytes(path))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageReadError(f"{path}: unreadable image ({error})") from None


def center_crop_adm(image: np.ndarray, size: int) -> np.ndarray:
    """ADM's ImageNet crop (Dhariwal & Nichol 2021, `image_datasets.center_crop_arr`; REPA's
    `center-crop-dhariwal`): halve with a box filter while the short side is >= 2 * size, resize bicubically
    so the short side is `size`, then take the central size x size square. (H, W, 3) uint8 -> (size, size, 3).
    """
    pil = Image.fromarray(image)
    while min(pil.size) >= 2 * size:
        pil = pil.resize(tuple(side // 2 for side in pil.size), resample=Image.Resampling.BOX)
    scale = size / min(pil.size)
    pil = pil.resize(tuple(round(side * scale) for side in pil.size), resample=Image.Resampling.BICUBIC)
    array = np.asarray(pil)
    top, left = (array.shape[0] - size) // 2, (array.shape[1] - size) // 2
    return array[top:top + size, left:left + size]


def encode_image(image: np.ndarray, image_format: str = "png") -> bytes:
    """(H, W, 3) uint8 -> PNG (lossless, as REPA stores its crops) or JPEG (quality 95) bytes."""
    buffer = io.BytesIO()
    if image_format == "png":
        Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    else:
        Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """PNG/JPEG bytes -> (H, W, 3) uint8."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))

"""Image listing, ADM's centre crop (checked against the published rule worked by hand), named read errors, and
the latent record format."""

import json

import numpy as np
import pytest
from PIL import Image

from jaxrep.config_checks import ConfigError
from jaxrep.data.images import ImageReadError, center_crop_adm, decode_image, encode_image, list_images, read_rgb
from jaxrep.data.latent_records import decode_record, encode_record


def _pattern(height, width):
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([rows % 256, cols % 256, (rows * 7 + cols * 3) % 256], -1).astype(np.uint8)


def test_center_crop_of_a_square_image_at_its_size_is_the_identity():
    image = _pattern(64, 64)
    np.testing.assert_array_equal(center_crop_adm(image, 64), image)


def test_center_crop_halves_with_a_box_filter_then_takes_the_central_square():
    # 400 x 600 to 100: the short side 400 >= 200 -> box-halve to 200 x 300; 200 >= 200 -> 100 x 150; the bicubic
    # resize is then to the same size, and the crop keeps columns 25 .. 124 (ADM's rule worked by hand).
    image = _pattern(400, 600)
    once = np.asarray(Image.fromarray(image).resize((300, 200), Image.Resampling.BOX))
    twice = np.asarray(Image.fromarray(once).resize((150, 100), Image.Resampling.BOX))
    np.testing.assert_array_equal(center_crop_adm(image, 100), twice[:, 25:125])


def test_center_crop_upscales_a_small_image_bicubically():
    image = _pattern(30, 50)  # short side 30 -> 60: bicubic to 100 x 60, crop columns 20 .. 79
    expected = np.asarray(Image.fromarray(image).resize((100, 60), Image.Resampling.BICUBIC))[:, 20:80]
    np.testing.assert_array_equal(center_crop_adm(image, 60), expected)


def _write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def test_list_images_labels_class_folders_in_sorted_order(tmp_path):
    for name in ("n02", "n01"):
        for i in range(2):
            _write(tmp_path / name / f"{i}.png", _pattern(8, 8))
    (tmp_path / "n01" / "notes.txt").write_text("not an image")
    entries, classes = list_images(str(tmp_path))
    assert classes == ["n01", "n02"]
    assert [(e.path, e.label) for e in entries] == [("n01/0.png", 0), ("n01/1.png", 0), ("n02/0.png", 1),
                                                    ("n02/1.png", 1)]


def test_list_images_reads_an_edm_dataset_json(tmp_path):
    for name in ("a.png", "b.jpg"):
        _write(tmp_path / name, _pattern(8, 8))
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": [["b.jpg", 7], ["a.png", 3]]}))
    entries, classes = list_images(str(tmp_path))
    assert [(e.path, e.label) for e in entries] == [("a.png", 3), ("b.jpg", 7)] and classes == []
    (tmp_path / "c.png").write_bytes((tmp_path / "a.png").read_bytes())
    with pytest.raises(ConfigError, match="labels_path: .* no label for 1 images"):
        list_images(str(tmp_path))


def test_list_images_refuses_loose_images_without_labels_and_empty_folders(tmp_path):
    with pytest.raises(ConfigError, match="data_dir: no images"):
        list_images(str(tmp_path))
    _write(tmp_path / "loose.png", _pattern(8, 8))
    _write(tmp_path / "cls" / "x.png", _pattern(8, 8))
    with pytest.raises(ConfigError, match="outside class folders"):
        list_images(str(tmp_path))


def test_unreadable_image_error_names_the_path(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ImageReadError, match=str(bad)):
        read_rgb(str(bad))


def test_record_round_trip_keeps_moments_label_and_lossless_png():
    rng = np.random.default_rng(0)
    mean, std = rng.normal(size=(4, 4, 4)).astype(np.float32), rng.uniform(size=(4, 4, 4)).astype(np.float32)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    record = decode_record(encode_record(mean, std, 5, encode_image(image)))
    np.testing.assert_array_equal(record["mean"], mean)
    np.testing.assert_array_equal(record["std"], std)
    assert record["label"] == 5
    np.testing.assert_array_equal(decode_image(record["image"]), image)
    jpeg = decode_image(encode_image(image, "jpeg"))
    assert jpeg.shape == image.shape and jpeg.dtype == np.uint8

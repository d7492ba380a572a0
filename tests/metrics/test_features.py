"""Feature extraction for evaluation: batched/sharded statistics, eval-net checkpoints, Inception input handling,
and the reference-statistics cache."""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep import parallel
from jaxrep.metrics import statistics
from jaxrep.nn.eval_net import EvalNet
from jaxrep.nn.inception import FIDInceptionV3
from jaxrep.nn.vit import ViT
from jaxrep.weights.encoder import save_encoder
from jaxrep.weights.features import (
    FeatureSet,
    cached_reference_features,
    eval_net_extractor,
    extract_features,
    inception_extractor,
    load_eval_net,
    load_feature_extractor,
    load_feature_set,
    load_statistics,
    save_eval_net,
)
from jaxrep.weights.frozen import FrozenWeightsError

FACTOR_SIZES = (3, 6, 3, 5, 5)
IMAGE_SHAPE = (32, 32, 3)


@pytest.fixture(scope="module")
def tiny_net():
    model = EvalNet(factor_sizes=FACTOR_SIZES, widths=(4, 8), feature_dim=16)
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, *IMAGE_SHAPE)))["params"]
    return model, params


def _images(count, seed=0, shape=IMAGE_SHAPE):
    return np.random.default_rng(seed).integers(0, 256, size=(count, *shape), dtype=np.uint8)


def _batches(images, size):
    return (images[start:start + size] for start in range(0, len(images), size))


def test_eval_net_shapes_and_feature_range(tiny_net):
    model, params = tiny_net
    logits, features = model.apply({"params": params}, jnp.zeros((2, *IMAGE_SHAPE)))
    assert [l.shape for l in logits] == [(2, size) for size in FACTOR_SIZES]
    assert features.shape == (2, 16) and bool(jnp.all(features >= 0))  # post-ReLU, like pool3


@pytest.mark.parametrize("num_devices", [1, 8])
def test_extract_features_equals_direct_statistics(tiny_net, num_devices):
    """Padding of the last batch and sharding over the mesh change nothing: 37 images in batches of 16."""
    model, params = tiny_net
    extractor = eval_net_extractor(model, params, image_shape=IMAGE_SHAPE)
    images = _images(37)
    direct = np.asarray(model.apply({"params": params}, images.astype(np.float32) / 127.5 - 1.0)[1])
    mesh = parallel.make_mesh(jax.devices()[:num_devices])
    result = extract_features(extractor, _batches(images, 16), batch_size=16, mesh=mesh, keep=20)
    mu, sigma = statistics(direct)
    assert result.statistics.count == 37
    np.testing.assert_allclose(result.statistics.mean, mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.statistics.covariance, sigma, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.features, direct[:20], rtol=1e-5, atol=1e-6)


def test_extract_features_rejects_bad_input(tiny_net):
    model, params = tiny_net
    extractor = eval_net_extractor(model, params, image_shape=IMAGE_SHAPE)
    mesh = parallel.make_mesh(jax.devices()[:1])
    with pytest.raises(TypeError, match="uint8"):
        extract_features(extractor, [np.zeros((2, *IMAGE_SHAPE), np.float32)], batch_size=4, mesh=mesh)
    with pytest.raises(ValueError, match="takes"):
        extract_features(extractor, [_images(2, shape=(64, 64, 1))], batch_size=4, mesh=mesh)
    with pytest.raises(ValueError, match="divisible"):
        extract_features(extractor, [_images(2)], batch_size=3, mesh=parallel.make_mesh(jax.devices()[:2]))


def test_eval_net_checkpoint_round_trip(tiny_net, tmp_path):
    model, params = tiny_net
    save_eval_net(tmp_path / "net", model, params, image_shape=IMAGE_SHAPE, data_source="shapes32",
                  info={"holdout_factor_accuracy": 1.0})
    loaded_model, loaded_params, metadata = load_eval_net(tmp_path / "net")
    assert loaded_model == model
    assert metadata["info"]["holdout_factor_accuracy"] == 1.0 and metadata["data_source"] == "shapes32"
    chex.assert_trees_all_equal(loaded_params, params)
    extractor = load_feature_extractor("eval_net", tmp_path / "net")
    assert extractor.fingerprint == eval_net_extractor(model, params, image_shape=IMAGE_SHAPE).fingerprint
    assert extractor.metadata["path"] == str(tmp_path / "net")
    with pytest.raises(FrozenWeightsError, match="no eval-net checkpoint directory .* train.eval_net"):
        load_eval_net(tmp_path / "missing")
    with pytest.raises(FrozenWeightsError, match="not an eval-net written by train/eval_net.py"):
        save_encoder(tmp_path / "encoder", ViT(patch_size=4, width=8, depth=1, num_heads=2, mlp_ratio=2.0),
                     {"w": np.zeros(2)}, image_size=8)
        load_eval_net(tmp_path / "encoder")
    with pytest.raises(ValueError, match="must be one of"):
        load_feature_extractor("clip", tmp_path / "net")


def test_inception_extractor_takes_any_size_of_rgb_or_grey_but_not_latents():
    """The full Inception pipeline is checked against pytorch-fid in tests/nn/test_inception.py."""
    variables = jax.eval_shape(FIDInceptionV3(resize_input=False).init, jax.random.key(0), jnp.zeros((1, 75, 75, 3)))
    extractor = inception_extractor(jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), variables))
    assert extractor.dim == 2048 and extractor.image_shape is None
    extractor.check_images((32, 32, 3))
    extractor.check_images((64, 64, 1))
    with pytest.raises(ValueError, match="latent"):
        extractor.check_images((32, 32, 4))


def test_reference_cache_computes_once_and_keys_on_weights_and_data(tiny_net, tmp_path):
    model, params = tiny_net
    extractor = eval_net_extractor(model, params, image_shape=IMAGE_SHAPE)
    images = _images(30, seed=3)
    calls = []

    def make_batches():
        calls.append(1)
        return _batches(images, 10)

    kwargs = dict(cache_dir=tmp_path, batch_size=10, mesh=parallel.make_mesh(jax.devices()[:2]), keep=30)
    first, path, hit = cached_reference_features(extractor, make_batches, description={"data": "a"}, **kwargs)
    assert not hit and len(calls) == 1 and os.path.isfile(path)
    second, same_path, hit = cached_reference_features(extractor, make_batches, description={"data": "a"}, **kwargs)
    assert hit and same_path == path and len(calls) == 1
    np.testing.assert_array_equal(second.features, first.features)
    np.testing.assert_allclose(second.statistics.covariance, first.statistics.covariance, rtol=1e-12)
    assert second.statistics.count == 30

    # The file is a pytorch-fid / ADM statistics file too.
    mu, sigma = load_statistics(path)
    np.testing.assert_allclose(mu, first.statistics.mean)
    loaded, description = load_feature_set(path)
    assert isinstance(loaded, FeatureSet) and description["data"] == {"data": "a"}

    cached_reference_features(extractor, make_batches, description={"data": "b"}, **kwargs)
    assert len(calls) == 2  # other data
    other_params = jax.tree.map(lambda x: x + 1e-3, params)
    other = eval_net_extractor(model, other_params, image_shape=IMAGE_SHAPE)
    _, other_path, hit = cached_reference_features(other, make_batches, description={"data": "a"}, **kwargs)
    assert not hit and other_path != path and len(calls) == 3  # other weights

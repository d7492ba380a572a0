"""Target pipeline: REPA preprocessing and token-grid resizing against torch; frozen-encoder targets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.align.repa import repa_loss
from jaxrep.align.targets import IMAGENET_MEAN, IMAGENET_STD, encoder_targets, preprocess_images, resize_token_grid
from jaxrep.nn.vit import vit_preset
from tests.extras import import_extra


def _images(seed=0, side=32):
    return np.random.default_rng(seed).integers(0, 256, size=(2, side, side, 3), dtype=np.uint8)


def test_preprocess_matches_repa_torch_pipeline():
    torch = import_extra("torch", "ref")
    images = _images()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    reference = torch.nn.functional.interpolate(x, size=(28, 28), mode="bicubic").permute(0, 2, 3, 1).numpy()
    pixels = jax.jit(lambda im: preprocess_images(im, image_size=28))(jnp.asarray(images))
    assert pixels.shape == (2, 28, 28, 3) and pixels.dtype == jnp.float32
    np.testing.assert_allclose(pixels, reference, atol=2e-5)


def test_preprocess_accepts_unit_floats_and_rejects_nchw():
    images = _images(1)
    from_uint8 = preprocess_images(jnp.asarray(images), image_size=32)
    from_float = preprocess_images(jnp.asarray(images, jnp.float32) / 255.0, image_size=32)
    np.testing.assert_allclose(from_uint8, from_float, atol=1e-6)
    expected = (images[0, 0, 0] / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(from_uint8[0, 0, 0], expected, rtol=1e-5)  # no resize at equal size
    with pytest.raises(ValueError, match="channels-last"):
        preprocess_images(jnp.zeros((2, 3, 32, 32), jnp.uint8))


@pytest.mark.parametrize("grid_in,grid_out", [((4, 4), (6, 6)), ((6, 6), (4, 4)), ((2, 3), (4, 5))])
def test_resize_token_grid_matches_torch_bilinear(grid_in, grid_out):
    torch = import_extra("torch", "ref")
    tokens = np.random.default_rng(2).normal(size=(2, grid_in[0] * grid_in[1], 5)).astype(np.float32)
    grid = torch.from_numpy(tokens.reshape(2, *grid_in, 5)).permute(0, 3, 1, 2)
    reference = torch.nn.functional.interpolate(grid, size=grid_out, mode="bilinear", align_corners=False)
    reference = reference.permute(0, 2, 3, 1).reshape(2, -1, 5).numpy()
    square = grid_in[0] == grid_in[1]
    resized = resize_token_grid(jnp.asarray(tokens), grid_out, grid_hw_in=None if square else grid_in)
    np.testing.assert_allclose(resized, reference, atol=1e-6)


def test_resize_token_grid_layout_and_errors():
    # Token value = its column: a horizontal ramp stays a ramp in the interior, rows stay constant.
    ramp = jnp.tile(jnp.arange(4.0), 4).reshape(1, 16, 1)
    upsampled = np.asarray(resize_token_grid(ramp, (8, 8))).reshape(8, 8)
    np.testing.assert_allclose(upsampled[:, 1:7], np.tile((np.arange(1, 7) + 0.5) / 2 - 0.5, (8, 1)), atol=1e-6)
    np.testing.assert_array_equal(resize_token_grid(ramp, (4, 4)), ramp)
    with pytest.raises(ValueError, match="pass grid_hw_in"):
        resize_token_grid(jnp.ones((1, 12, 3)), (4, 4))
    with pytest.raises(ValueError, match="does not hold"):
        resize_token_grid(jnp.ones((1, 12, 3)), (4, 4), grid_hw_in=(3, 3))


def test_encoder_targets_shapes_and_frozen_encoder():
    encoder = vit_preset("tiny", pos_embed_grid=2)
    images = jnp.asarray(_images(3))
    shapes = jax.eval_shape(encoder.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 28, 28, 3), jnp.float32))
    rng = np.random.default_rng(4)
    params = jax.tree.map(lambda s: jnp.asarray(0.1 * rng.normal(size=s.shape), jnp.float32), shapes["params"])

    @jax.jit
    def targets_and_grads(params):
        targets = encoder_targets(encoder, params, images, image_size=28)
        resized = encoder_targets(encoder, params, images, image_size=28, grid_hw=(4, 4))
        direct = encoder.apply({"params": params}, preprocess_images(images, image_size=28))
        grads = jax.grad(lambda p: repa_loss(jnp.ones((2, 16, 64)), encoder_targets(
            encoder, p, images, image_size=28, grid_hw=(4, 4))))(params)
        return targets, resized, direct, grads

    targets, resized, direct, grads = targets_and_grads(params)
    assert targets.shape == (2, 4, 64) and resized.shape == (2, 16, 64)
    np.testing.assert_allclose(targets, direct, atol=1e-6)
    np.testing.assert_allclose(resized, resize_token_grid(targets, (4, 4)), atol=1e-6)
    for leaf in jax.tree.leaves(grads):
        np.testing.assert_array_equal(leaf, np.zeros_like(leaf))

"""iREPA pieces: spatial normalisation against NumPy (ddof=1), conv projector on known kernels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.align.irepa import ConvProjector, spatial_normalize
from tests.extras import import_extra


def _numpy_zscore(tokens, gamma, eps, ddof=1, eps_in_sqrt=False):
    tokens = np.asarray(tokens, np.float64)
    mean = tokens.mean(axis=1, keepdims=True)
    var = tokens.var(axis=1, keepdims=True, ddof=ddof)
    scale = np.sqrt(var + eps) if eps_in_sqrt else np.sqrt(var) + eps
    return (tokens - gamma * mean) / scale


@pytest.mark.parametrize("variant", [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")])
@pytest.mark.parametrize("gamma", [0.6, 0.8, 1.0])
def test_spatial_normalize_matches_numpy(variant, gamma):
    tokens = np.random.default_rng(0).normal(2.0, 3.0, size=(3, 16, 5)).astype(np.float32)
    normalize = variant(lambda y: spatial_normalize(y, gamma))
    np.testing.assert_allclose(normalize(jnp.asarray(tokens)), _numpy_zscore(tokens, gamma, 1e-6),
                               rtol=1e-5, atol=1e-5)


def test_spatial_normalize_hand_computed_and_ddof():
    tokens = jnp.array([[[1.0], [3.0]]])  # mean 2, unbiased std sqrt(2), biased std 1
    expected = np.array([[[(1 - 1.2) / 2**0.5], [(3 - 1.2) / 2**0.5]]])
    np.testing.assert_allclose(spatial_normalize(tokens), expected, rtol=1e-5)
    np.testing.assert_allclose(spatial_normalize(tokens, ddof=0), expected * 2**0.5, rtol=1e-5)


def test_spatial_normalize_full_zscore_and_paper_form():
    tokens = np.random.default_rng(1).normal(1.0, 4.0, size=(2, 64, 7)).astype(np.float32)
    z = spatial_normalize(jnp.asarray(tokens), gamma=1.0)
    np.testing.assert_allclose(z.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.std(z, axis=1, ddof=1), 1.0, atol=1e-5)
    paper = spatial_normalize(jnp.asarray(tokens), gamma=1.0, eps=1e-2, eps_in_sqrt=True)
    np.testing.assert_allclose(paper, _numpy_zscore(tokens, 1.0, 1e-2, eps_in_sqrt=True), rtol=1e-5, atol=1e-6)
    # Per image: the second image's statistics do not leak into the first.
    np.testing.assert_allclose(spatial_normalize(jnp.asarray(tokens[:1]), gamma=1.0), z[:1], atol=1e-6)


def test_spatial_normalize_dtype_and_errors():
    assert spatial_normalize(jnp.ones((1, 4, 2), jnp.bfloat16)).dtype == jnp.float32
    with pytest.raises(ValueError, match="more than ddof"):
        spatial_normalize(jnp.ones((2, 1, 3)))
    with pytest.raises(AssertionError, match=r"assert_rank failed.*has rank 2 \(shape \(4, 3\)\) but expected 3"):
        spatial_normalize(jnp.ones((4, 3)))


def _conv_params(kernel, bias):
    return {"params": {"conv": {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}}}


@pytest.mark.parametrize("grid_hw", [(4, 4), (2, 3)])
def test_conv_projector_delta_kernels(grid_hw):
    height, width, dim = *grid_hw, 3
    tokens = jnp.asarray(np.random.default_rng(2).normal(size=(2, height * width, dim)).astype(np.float32))
    projector = ConvProjector(out_dim=dim, grid_hw=None if height == width else grid_hw)
    centre = np.zeros((3, 3, dim, dim), np.float32)
    centre[1, 1] = np.eye(dim)
    bias = np.arange(dim, dtype=np.float32)
    np.testing.assert_allclose(projector.apply(_conv_params(centre, bias), tokens), tokens + bias, atol=1e-6)
    # Tap at kernel column +1 reads the right-hand neighbour: row-major, zero padding at the border.
    right = np.zeros((3, 3, dim, dim), np.float32)
    right[1, 2] = np.eye(dim)
    shifted = np.asarray(projector.apply(_conv_params(right, np.zeros(dim)), tokens))
    grid = np.asarray(tokens).reshape(2, height, width, dim)
    expected = np.zeros_like(grid)
    expected[:, :, :-1] = grid[:, :, 1:]
    np.testing.assert_allclose(shifted, expected.reshape(2, height * width, dim), atol=1e-6)
    # Tap at kernel row +1 reads the token one row below, i.e. index n + W.
    down = np.zeros((3, 3, dim, dim), np.float32)
    down[2, 1] = np.eye(dim)
    below = np.asarray(projector.apply(_conv_params(down, np.zeros(dim)), tokens))
    np.testing.assert_allclose(below[:, : (height - 1) * width], np.asarray(tokens)[:, width:], atol=1e-6)
    np.testing.assert_allclose(below[:, (height - 1) * width:], 0.0)


def test_conv_projector_matches_torch_conv2d():
    torch = import_extra("torch", "ref")
    tokens = np.random.default_rng(3).normal(size=(2, 16, 6)).astype(np.float32)
    projector = ConvProjector(out_dim=5)
    params = jax.jit(projector.init)(jax.random.key(0), jnp.asarray(tokens))
    kernel, bias = params["params"]["conv"]["kernel"], params["params"]["conv"]["bias"]
    assert kernel.shape == (3, 3, 6, 5) and bias.shape == (5,)
    bound = 1 / np.sqrt(6 * 9)  # PyTorch's default Conv2d init range
    assert float(jnp.abs(kernel).max()) <= bound and float(jnp.abs(bias).max()) <= bound
    grid = torch.from_numpy(tokens.reshape(2, 4, 4, 6)).permute(0, 3, 1, 2)
    weight = torch.from_numpy(np.array(kernel).transpose(3, 2, 0, 1))
    reference = torch.nn.functional.conv2d(grid, weight, torch.from_numpy(np.array(bias)), padding=1)
    reference = reference.permute(0, 2, 3, 1).reshape(2, 16, 5).numpy()
    np.testing.assert_allclose(projector.apply(params, jnp.asarray(tokens)), reference, atol=1e-5)


def test_conv_projector_errors():
    with pytest.raises(ValueError, match="not a square grid"):
        ConvProjector(out_dim=4).init(jax.random.key(0), jnp.ones((1, 12, 3)))
    with pytest.raises(ValueError, match="does not hold 12 tokens"):
        ConvProjector(out_dim=4, grid_hw=(3, 5)).init(jax.random.key(0), jnp.ones((1, 12, 3)))

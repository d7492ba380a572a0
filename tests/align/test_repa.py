"""REPA loss and MLP projector: hand-computed values, stop-gradient on the target, shape errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.align.repa import MLPProjector, l2_normalize, repa_loss

VARIANTS = [pytest.param(lambda fn: fn, id="eager"), pytest.param(jax.jit, id="jit")]


def _tokens(seed, shape=(2, 16, 8)):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


@pytest.mark.parametrize("variant", VARIANTS)
def test_repa_loss_extremes(variant):
    loss = variant(repa_loss)
    tokens = _tokens(0)
    np.testing.assert_allclose(loss(tokens, tokens), -1.0, atol=1e-6)
    np.testing.assert_allclose(loss(2.5 * tokens, tokens), -1.0, atol=1e-6)  # scale invariant
    np.testing.assert_allclose(loss(-tokens, tokens), 1.0, atol=1e-6)
    x_axis = jnp.tile(jnp.array([1.0, 0.0, 0.0]), (3, 5, 1))
    y_axis = jnp.tile(jnp.array([0.0, 2.0, 0.0]), (3, 5, 1))
    np.testing.assert_allclose(loss(x_axis, y_axis), 0.0, atol=1e-7)


def test_repa_loss_hand_computed():
    # Image 0: cos = 1 and 1/sqrt(2); image 1: cos = 0 and -1. Mean over tokens, then images.
    projected = jnp.array([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 3.0], [-1.0, 0.0]]])
    target = jnp.array([[[2.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [4.0, 0.0]]])
    expected = -((1.0 + 2**-0.5) / 2 + (0.0 - 1.0) / 2) / 2
    np.testing.assert_allclose(repa_loss(projected, target), expected, rtol=1e-6)


def test_repa_loss_matches_torch_reference_formula():
    """-mean_b mean_n <F.normalize(z), F.normalize(y)> written out in NumPy (float64)."""
    projected, target = _tokens(1, (3, 10, 6)), _tokens(2, (3, 10, 6))
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)  # noqa: E731
    expected = -np.mean(np.sum(unit(np.float64(projected)) * unit(np.float64(target)), -1))
    np.testing.assert_allclose(repa_loss(projected, target), expected, rtol=1e-6)


def test_repa_loss_gradients():
    projected, target = _tokens(3), _tokens(4)
    grad_projected, grad_target = jax.grad(repa_loss, argnums=(0, 1))(projected, target)
    np.testing.assert_array_equal(grad_target, np.zeros_like(target))  # frozen encoder
    assert float(jnp.abs(grad_projected).max()) > 0
    # Radial direction is invariant: the gradient is orthogonal to each projected token.
    np.testing.assert_allclose(jnp.sum(grad_projected * projected, -1), 0.0, atol=1e-6)


def test_zero_token_is_finite_like_f_normalize():
    projected = _tokens(5).at[0, 0].set(0.0)
    target = _tokens(6)
    np.testing.assert_array_equal(l2_normalize(projected)[0, 0], np.zeros(8))
    loss, grad = jax.value_and_grad(repa_loss)(projected, target)
    assert np.isfinite(float(loss)) and bool(jnp.all(jnp.isfinite(grad)))


def test_repa_loss_is_float32_for_bf16_inputs():
    tokens = _tokens(7).astype(jnp.bfloat16)
    loss = repa_loss(tokens, tokens)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, -1.0, atol=1e-5)


def test_repa_loss_shape_errors():
    with pytest.raises(ValueError, match=r"token count N.*resize_token_grid"):
        repa_loss(jnp.ones((2, 256, 8)), jnp.ones((2, 324, 8)))
    with pytest.raises(ValueError, match=r"width D"):
        repa_loss(jnp.ones((2, 16, 8)), jnp.ones((2, 16, 12)))
    with pytest.raises(AssertionError, match=r"assert_rank failed.*input 0 has rank 2 \(shape \(2, 16\)\)"):
        repa_loss(jnp.ones((2, 16)), jnp.ones((2, 16)))


def test_mlp_projector_structure_and_forward():
    projector = MLPProjector(out_dim=12, hidden_dim=32)
    tokens = _tokens(8, (2, 5, 8))
    params = jax.jit(projector.init)(jax.random.key(0), tokens)["params"]
    chex.assert_trees_all_equal_shapes(params, {
        "Dense_0": {"kernel": jnp.zeros((8, 32)), "bias": jnp.zeros(32)},
        "Dense_1": {"kernel": jnp.zeros((32, 32)), "bias": jnp.zeros(32)},
        "Dense_2": {"kernel": jnp.zeros((32, 12)), "bias": jnp.zeros(12)},
    })
    np.testing.assert_array_equal(params["Dense_1"]["bias"], np.zeros(32))
    params = jax.tree.map(lambda p: p + 0.1, params)  # non-zero biases for the check below
    silu = lambda x: x / (1 + np.exp(-x))  # noqa: E731
    x = np.asarray(tokens, np.float64)
    for name in ("Dense_0", "Dense_1"):
        x = silu(x @ params[name]["kernel"] + params[name]["bias"])
    expected = x @ params["Dense_2"]["kernel"] + params["Dense_2"]["bias"]
    np.testing.assert_allclose(projector.apply({"params": params}, tokens), expected, rtol=1e-4, atol=1e-5)
    assert MLPProjector(out_dim=768).hidden_dim == 2048

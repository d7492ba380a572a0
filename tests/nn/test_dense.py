"""TokenDense: nn.Dense's parameters and results on token tensors, without XLA:CPU's transposing copies."""

import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.nn.dense import TokenDense


def _loss(module):
    return lambda params, x: jnp.sum(jnp.sin(module.apply(params, x)))


@pytest.mark.parametrize("shape", [(5,), (4, 5), (3, 4, 5), (2, 3, 4, 5)])
def test_equals_flax_dense(shape):
    x = jax.random.normal(jax.random.key(1), shape)
    dense, token_dense = nn.Dense(7), TokenDense(7)
    params = dense.init(jax.random.key(0), x)
    chex.assert_trees_all_equal(token_dense.init(jax.random.key(0), x), params)  # same names, shapes, init
    out = token_dense.apply(params, x)
    chex.assert_shape(out, (*shape[:-1], 7))
    np.testing.assert_allclose(out, dense.apply(params, x), rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_close(jax.grad(_loss(token_dense), argnums=(0, 1))(params, x),
                                jax.grad(_loss(dense), argnums=(0, 1))(params, x), rtol=1e-5, atol=1e-6)


def test_dtype_field_is_kept():
    x = jnp.ones((2, 3, 4))
    module = TokenDense(6, dtype=jnp.bfloat16)
    assert module.apply(module.init(jax.random.key(0), x), x).dtype == jnp.bfloat16


def test_weight_gradient_compiles_without_activation_copies():
    """The point of TokenDense: on tokens (B, N, D) the compiled gradient holds no transpose or copy."""
    x = jnp.ones((8, 64, 96))
    module = TokenDense(128)
    params = module.init(jax.random.key(0), x)
    hlo = jax.jit(jax.grad(_loss(module))).lower(params, x).compile().as_text()
    layout_changes = re.findall(r"= f32\[[\d,]+\]\{[\d,]+\} (?:copy|transpose)\(", hlo)
    assert not layout_changes, layout_changes

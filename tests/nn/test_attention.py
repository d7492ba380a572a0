"""Attention implementations (`model.attention_impl`): one parameter layout, the same outputs and gradients."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import diffusion as diffusion_configs
from jaxrep.config_checks import ConfigError
from jaxrep.nn.attention import heads_major_attention
from jaxrep.nn.sit import SiT


def tiny_sit(**fields) -> SiT:
    return SiT(input_size=16, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=4, num_classes=10,
               **fields)


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.normal(size=(3, 16, 16, 4)), jnp.float32), jnp.asarray(rng.uniform(size=3), jnp.float32),
            jnp.asarray([0, 4, 10], jnp.int32))


def perturbed_params(model, x, t, y):
    """Init params with the zero-initialised adaLN and final layers made non-zero, so attention matters."""
    params = model.init(jax.random.key(0), x, t, y)["params"]
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    return jax.tree.unflatten(tree, [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def test_heads_major_attention_is_softmax_attention():
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=(2, 3, 5, 8)), jnp.float32) for _ in range(3))
    logits = np.einsum("bhqd,bhkd->bhqk", q, k) / np.sqrt(8)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    expected = np.einsum("bhqk,bhkd->bhqd", weights / weights.sum(-1, keepdims=True), v)
    np.testing.assert_allclose(heads_major_attention(q, k, v), expected, rtol=1e-5, atol=1e-6)
    reference = jax.nn.dot_product_attention(q.swapaxes(1, 2), k.swapaxes(1, 2), v.swapaxes(1, 2)).swapaxes(1, 2)
    np.testing.assert_allclose(heads_major_attention(q, k, v), reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fields", [{}, {"qk_norm": True, "use_rope": True}])
def test_cpu_layout_equals_xla_in_params_outputs_and_gradients(fields):
    x, t, y = inputs()
    xla, cpu = tiny_sit(**fields), tiny_sit(attention_impl="cpu_layout", **fields)
    init = lambda model: model.init(jax.random.key(0), x, t, y)["params"]  # noqa: E731
    chex.assert_trees_all_equal(init(cpu), init(xla))  # one parameter layout, the same init
    params = perturbed_params(xla, x, t, y)
    forward = lambda model: jax.jit(lambda p: model.apply({"params": p}, x, t, y, hidden_at=1))  # noqa: E731
    (v_xla, h_xla), (v_cpu, h_cpu) = forward(xla)(params), forward(cpu)(params)
    assert float(jnp.abs(v_xla).max()) > 1e-2  # not vacuous: the perturbed blocks move the output
    np.testing.assert_allclose(v_cpu, v_xla, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h_cpu, h_xla, rtol=1e-5, atol=1e-5)
    loss = lambda model: jax.jit(jax.grad(lambda p: jnp.mean(model.apply({"params": p}, x, t, y) ** 2)))  # noqa: E731
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), loss(cpu)(params),
                 loss(xla)(params))


def test_bfloat16_cpu_layout_tracks_xla():
    x, t, y = inputs(1)
    params = perturbed_params(tiny_sit(), x, t, y)
    outputs = [tiny_sit(dtype=jnp.bfloat16, attention_impl=impl).apply({"params": params}, x, t, y)
               for impl in ("xla", "cpu_layout")]
    np.testing.assert_allclose(outputs[1], outputs[0], atol=3e-2)


def test_unknown_or_unavailable_implementations_fail_in_one_line():
    x, t, y = inputs()
    with pytest.raises(ValueError, match="model.attention_impl: must be one of"):
        tiny_sit(attention_impl="flash").init(jax.random.key(0), x, t, y)
    config = diffusion_configs.get_config("cpu")
    config.model.attention_impl = "cudnn"
    if jax.default_backend() != "gpu":
        with pytest.raises(ConfigError, match="model.attention_impl: 'cudnn' runs on NVIDIA GPUs only"):
            diffusion_configs.validate(config, num_devices=1)

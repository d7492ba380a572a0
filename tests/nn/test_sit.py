import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.align.erw import transplant_blocks
from jaxrep.nn.sit import PUBLISHED_PARAMS, SiT, SiTBlock, count_params, sincos_2d, sit_preset, timestep_frequencies


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_preset_parameter_counts_match_published(name):
    # DiT Table 1 counts (ImageNet 256, 32x32x4 latents, 1000 classes); eval_shape allocates nothing.
    model = sit_preset(name, input_size=32, in_channels=4, num_classes=1000)
    count = count_params(model)
    assert abs(count - PUBLISHED_PARAMS[name]) / PUBLISHED_PARAMS[name] < 0.01, (name, count)


def tiny(**kw):
    args = dict(input_size=8, patch_size=2, in_channels=3, hidden_size=32, depth=3, num_heads=4, num_classes=5)
    args.update(kw)
    return SiT(**args)


def init_tiny(model, batch=2):
    x = jnp.zeros((batch, 8, 8, 3))
    t = jnp.zeros((batch,))
    y = jnp.zeros((batch,), jnp.int32)
    return model.init(jax.random.key(0), x, t, y), (x, t, y)


def test_output_shape_hidden_states_and_zero_init():
    model = tiny()
    variables, (x, t, y) = init_tiny(model)
    x = jax.random.normal(jax.random.key(1), x.shape)
    v = model.apply(variables, x, t, y)
    assert v.shape == x.shape
    # adaLN-Zero: the final layer is zero-initialised, so the initial velocity is exactly zero.
    np.testing.assert_array_equal(v, 0.0)
    v2, hidden = model.apply(variables, x, t, y, hidden_at=2)
    np.testing.assert_array_equal(v, v2)
    assert hidden.shape == (2, 16, 32)
    assert set(variables["params"]) == {"x_embedder", "t_embedder", "y_embedder", "blocks_0", "blocks_1",
                                        "blocks_2", "final_layer"}
    assert variables["params"]["y_embedder"]["embedding"].shape == (6, 32)  # null class row
    with pytest.raises(ValueError, match="hidden_at"):
        model.apply(variables, x, t, y, hidden_at=4)


def test_hidden_state_is_the_residual_stream_after_block_k():
    model = tiny()
    variables, (x, t, y) = init_tiny(model)
    # Perturb params so blocks are not identity maps, then check hidden_at=k differs across k.
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(2), p.shape), variables["params"])
    x = jax.random.normal(jax.random.key(1), x.shape)
    hiddens = [model.apply({"params": params}, x, t, y, hidden_at=k)[1] for k in (1, 2, 3)]
    assert not np.allclose(hiddens[0], hiddens[1])
    assert not np.allclose(hiddens[1], hiddens[2])


def test_unpatchify_layout():
    # Final-layer bias b laid out (p_row, p_col, C): pixel (r, c, ch) must read b[((r % p) * p + c % p) * C + ch].
    model = tiny(depth=1)
    variables, (x, t, y) = init_tiny(model)
    params = jax.tree.map(lambda p: p, variables["params"])
    bias = jnp.arange(2 * 2 * 3, dtype=jnp.float32)
    params["final_layer"]["linear"]["bias"] = bias
    v = model.apply({"params": params}, x, t, y)
    r, c, ch = np.meshgrid(np.arange(8), np.arange(8), np.arange(3), indexing="ij")
    expected = np.asarray(bias)[((r % 2) * 2 + c % 2) * 3 + ch]
    np.testing.assert_array_equal(v[0], expected)
    np.testing.assert_array_equal(v[1], expected)


def test_labels_and_time_change_the_output():
    model = tiny()
    variables, (x, t, y) = init_tiny(model)
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(3), p.shape), variables["params"])
    x = jax.random.normal(jax.random.key(1), x.shape)
    base = model.apply({"params": params}, x, t, y)
    assert not np.allclose(base, model.apply({"params": params}, x, t + 0.5, y))
    assert not np.allclose(base, model.apply({"params": params}, x, t, y + 1))


def test_sincos_2d_layout():
    emb = sincos_2d(8, 2, 3)
    assert emb.shape == (6, 8)
    # token index r * W + c; first half encodes the column, second half the row; each half [sin | cos].
    r, c = 1, 2
    row = emb[r * 3 + c]
    np.testing.assert_allclose(row[:2], np.sin([c * 1.0, c * 0.01]), rtol=1e-12)
    np.testing.assert_allclose(row[2:4], np.cos([c * 1.0, c * 0.01]), rtol=1e-12)
    np.testing.assert_allclose(row[4:6], np.sin([r * 1.0, r * 0.01]), rtol=1e-12)


def test_timestep_frequencies_cos_first():
    f = timestep_frequencies(jnp.array([0.0, 0.5]), dim=4)
    np.testing.assert_allclose(f[0], [1, 1, 0, 0])
    np.testing.assert_allclose(f[1], [np.cos(0.5), np.cos(0.005), np.sin(0.5), np.sin(0.005)], rtol=1e-6)


def test_unknown_preset_names_field():
    with pytest.raises(ValueError, match="model.preset"):
        sit_preset("XXL/2")


def perturbed(variables, seed):
    return jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(seed), p.shape), variables["params"])


def test_rope_and_qk_norm_run_and_change_the_output():
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    t, y = jnp.array([0.3, 0.7]), jnp.array([1, 2])
    plain = tiny()
    params = perturbed(init_tiny(plain)[0], 4)
    base = plain.apply({"params": params}, x, t, y)
    rope = tiny(use_rope=True)
    assert jax.tree.structure(init_tiny(rope)[0]["params"]) == jax.tree.structure(params)  # RoPE has no params
    assert not np.allclose(rope.apply({"params": params}, x, t, y), base, atol=1e-4)

    qk_norm = tiny(use_rope=True, qk_norm=True)
    variables, _ = init_tiny(qk_norm)
    attn = variables["params"]["blocks_0"]["attn"]
    assert {name: {k: v.shape for k, v in attn[name].items()} for name in ("q_norm", "k_norm")} == {
        "q_norm": {"scale": (8,), "bias": (8,)}, "k_norm": {"scale": (8,), "bias": (8,)}}  # head_dim 32 / 4
    params = perturbed(variables, 4)
    v = qk_norm.apply({"params": params}, x, t, y)
    assert v.shape == x.shape and bool(jnp.all(jnp.isfinite(v)))
    v_jit = jax.jit(lambda p: qk_norm.apply({"params": p}, x, t, y))(params)
    np.testing.assert_allclose(v_jit, v, atol=1e-5)
    stripped = jax.tree.map(lambda p: p, params)
    for block in range(3):
        del stripped[f"blocks_{block}"]["attn"]["q_norm"], stripped[f"blocks_{block}"]["attn"]["k_norm"]
    assert not np.allclose(v, rope.apply({"params": stripped}, x, t, y), atol=1e-4)
    with pytest.raises(ValueError, match="use_rope: .*divisible by 4"):
        init_tiny(tiny(hidden_size=24, num_heads=4, use_rope=True))


@pytest.mark.parametrize("warmup_rope", [False, True])
def test_erw_transplant_with_rope_and_qk_norm_keeps_block_outputs(warmup_rope):
    # ERW warms blocks up without RoPE and trains the full model with it; both share the param tree.
    full = tiny(depth=4, use_rope=True, qk_norm=True)
    warm = tiny(depth=2, use_rope=warmup_rope, qk_norm=True)
    warm_params = perturbed(init_tiny(warm)[0], 5)
    fresh = init_tiny(full)[0]["params"]
    params = transplant_blocks(warm_params, fresh, num_blocks=2)
    np.testing.assert_array_equal(params["blocks_1"]["attn"]["q_norm"]["scale"],
                                  warm_params["blocks_1"]["attn"]["q_norm"]["scale"])
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    t, y = jnp.array([0.0, 0.0]), jnp.array([1, 2])
    _, hidden = full.apply({"params": params}, x, t, y, hidden_at=2)
    _, expected = warm.clone(use_rope=True).apply({"params": warm_params}, x, t, y, hidden_at=2)
    np.testing.assert_array_equal(hidden, expected)
    with pytest.raises(ValueError, match="differ between the warmup and the fresh params"):
        transplant_blocks(init_tiny(tiny(depth=2))[0]["params"], fresh, num_blocks=2)  # no QK-norm in warmup


def float64_layer_norm(x, eps):
    x = np.asarray(x, np.float64)
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps)


def large_mean_tokens(shape, ratio=60.0, seed=0):
    """Tokens whose |mean| / std is `ratio` (the regime where E[x^2] - E[x]^2 loses digits in float32)."""
    generator = np.random.default_rng(seed)
    means = ratio * generator.choice([-1.0, 1.0], size=(*shape[:-1], 1)) * generator.uniform(0.5, 2.0, (*shape[:-1], 1))
    scales = generator.uniform(0.5, 2.0, (*shape[:-1], 1)) * np.abs(means) / ratio
    return (means + scales * generator.standard_normal(shape)).astype(np.float32)


def test_block_layer_norm_matches_float64_for_large_means():
    # flax's fast variance drifts ~3e-4 relative here; PyTorch's (and the exact) one stays ~1e-6.
    width = 384
    x = large_mean_tokens((2, 16, width))
    c = jnp.asarray(np.random.default_rng(1).standard_normal((2, width)), jnp.float32)
    block = SiTBlock(width, 6)
    variables = block.init(jax.random.key(0), x, c)
    _, state = block.apply(variables, x, c, capture_intermediates=True)
    normed = np.asarray(state["intermediates"]["norm1"]["__call__"][0])
    expected = float64_layer_norm(x, 1e-6)
    assert np.max(np.abs(normed - expected)) / np.max(np.abs(expected)) < 1e-5

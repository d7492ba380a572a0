import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.nn.sit import PUBLISHED_PARAMS, SiT, count_params, sincos_2d, sit_preset, timestep_frequencies


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

"""bf16 activations with float32 parameters, optimizer state, losses, norms and time embeddings, for SiT
and the ViT encoders (the frozen alignment target and the in-repo encoder's pre-training)."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.align.encoder import make_target_fn
from jaxrep.data import ColoredShapes
from jaxrep.experiments import diffusion as diffusion_experiment
from jaxrep.experiments.encoder import TokenHeads, make_pretraining_loss
from jaxrep.losses import repa_loss
from jaxrep.nn.vit import ViT
from jaxrep.weights.encoder import load_encoder, save_encoder
from tests.helpers import first_batches, run_steps
from tests.helpers import tiny_diffusion_config as tiny_config


def test_bf16_loss_tracks_float32_and_state_stays_float32():
    # Stated tolerance: per-step losses within 2 % of float32 over 4 steps (bf16 has an 8-bit mantissa).
    f32 = diffusion_experiment.build_experiment(tiny_config(), jax.devices()[:1])
    bf16 = diffusion_experiment.build_experiment(tiny_config(**{"model.dtype": "bfloat16"}), jax.devices()[:1])
    batches = first_batches(f32.config, f32.mesh, 4)
    params = jax.tree.map(lambda p: p + 0.02 * jax.random.normal(jax.random.key(0), p.shape), f32.state.params)
    state_32, losses_32 = run_steps(f32.jitted_step, f32.state.replace(params=jax.tree.map(jnp.copy, params)), batches)
    state_16, losses_16 = run_steps(bf16.jitted_step, bf16.state.replace(params=jax.tree.map(jnp.copy, params)), batches)
    np.testing.assert_allclose(losses_16, losses_32, rtol=2e-2)
    assert not np.allclose(losses_16, losses_32, rtol=1e-6)  # bf16 compute really happened
    for tree in (state_16.params, state_16.ema_params, state_16.opt_state):
        assert all(leaf.dtype in (jnp.float32, jnp.int32) for leaf in jax.tree.leaves(tree))
    # Activations are bf16 inside the blocks but the model output (velocity) and loss are float32.
    model = bf16.model
    x = batches[0]["image"][:2]
    v, hidden = model.apply({"params": params["sit"]}, x, jnp.zeros((2,)), jnp.zeros((2,), jnp.int32), hidden_at=1)
    assert v.dtype == jnp.float32 and hidden.dtype == jnp.float32
    jaxpr = str(jax.make_jaxpr(lambda p: model.apply({"params": p}, x, jnp.zeros((2,)), jnp.zeros((2,), jnp.int32)))(
        params["sit"]))
    assert "bf16" in jaxpr


def test_bf16_target_encoder_gives_float32_tokens_aligned_with_float32(tmp_path):
    # Stated tolerance: each bf16 target token points within cos > 0.999 of its float32 twin, so the
    # alignment loss (a cosine) moves by < 1e-3; tokens come back float32, params stay float32.
    model = ViT(width=16, depth=2, num_heads=2, patch_size=4, pos_embed_grid=8)
    params = model.init(jax.random.key(7), jnp.zeros((1, 32, 32, 3)))["params"]
    save_encoder(str(tmp_path), model, params, image_size=32)
    images = jax.random.uniform(jax.random.key(1), (4, 32, 32, 3), minval=-1.0, maxval=1.0)
    tokens = {}
    for dtype in (jnp.float32, jnp.bfloat16):
        encoder = load_encoder("checkpoint", str(tmp_path), dtype=dtype)
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(encoder.params))
        tokens[dtype] = jax.jit(make_target_fn(encoder, grid_hw=(4, 4)))(encoder.params, images)
    assert tokens[jnp.bfloat16].dtype == jnp.float32 and tokens[jnp.bfloat16].shape == (4, 16, 16)
    assert repa_loss(tokens[jnp.bfloat16], tokens[jnp.float32]) < -0.999
    assert not np.allclose(tokens[jnp.bfloat16], tokens[jnp.float32], atol=1e-6)  # bf16 compute really happened


def test_bf16_encoder_pretraining_loss_tracks_float32():
    # Stated tolerance: the pre-training loss within 2 % of float32 at several parameter points.
    source = ColoredShapes()
    heads = TokenHeads(tuple(source.factor_sizes))
    models = {dtype: ViT(width=16, depth=2, num_heads=2, patch_size=4, pos_embed_grid=8, dtype=dtype)
              for dtype in (jnp.float32, jnp.bfloat16)}
    params = {"vit": models[jnp.float32].init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"],
              "heads": heads.init(jax.random.key(1), jnp.zeros((1, 64, 16)))["params"]}
    batch = {"image": np.stack([source[i]["image"] for i in range(0, 800, 100)]),
             "factors": np.stack([source[i]["factors"] for i in range(0, 800, 100)])}
    points = [jax.tree.map(lambda p, k=k: p + 0.1 * k * jax.random.normal(jax.random.key(k), p.shape), params)
              for k in range(3)]
    losses = {}
    for dtype, vit in models.items():
        loss_fn = jax.jit(make_pretraining_loss(vit, heads, image_size=32, coverage_weight=1.0))
        losses[dtype] = np.array([float(loss_fn(point, batch, None, 0)[0]) for point in points])
    np.testing.assert_allclose(losses[jnp.bfloat16], losses[jnp.float32], rtol=2e-2)
    assert not np.allclose(losses[jnp.bfloat16], losses[jnp.float32], rtol=1e-7)  # bf16 compute really happened

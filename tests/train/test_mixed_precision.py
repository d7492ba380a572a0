"""bf16 activations with float32 parameters, optimizer state, losses, norms and time embeddings."""

import jax
import jax.numpy as jnp
import numpy as np

from tests.train.test_diffusion_training import _first_batches, _run_steps, tiny_config
from train import diffusion as train_diffusion


def test_bf16_loss_tracks_float32_and_state_stays_float32():
    # Stated tolerance: per-step losses within 2 % of float32 over 4 steps (bf16 has an 8-bit mantissa).
    f32 = train_diffusion.build_experiment(tiny_config(), jax.devices()[:1])
    bf16 = train_diffusion.build_experiment(tiny_config(**{"model.dtype": "bfloat16"}), jax.devices()[:1])
    batches = _first_batches(f32.config, f32.mesh, 4)
    params = jax.tree.map(lambda p: p + 0.02 * jax.random.normal(jax.random.key(0), p.shape), f32.state.params)
    state_32, losses_32 = _run_steps(f32.jitted_step, f32.state.replace(params=jax.tree.map(jnp.copy, params)), batches)
    state_16, losses_16 = _run_steps(bf16.jitted_step, bf16.state.replace(params=jax.tree.map(jnp.copy, params)), batches)
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

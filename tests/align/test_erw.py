"""ERW pieces: the decaying weight, the (bug-fixed) warmup loss, and the block transplant."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import diffusion as diffusion_configs
from jaxrep.align.erw import erw_alignment_weight, erw_initial_weight, erw_warmup_loss, transplant_blocks
from jaxrep.align.repa import repa_loss

WARMUP, HALF_LIFE = 100_000, 50_000


@pytest.mark.parametrize("variant", [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")])
def test_erw_weight_schedule(variant):
    weight = variant(functools.partial(erw_alignment_weight, warmup_steps=WARMUP, max_steps=300_000))
    np.testing.assert_allclose(weight(jnp.int32(WARMUP)), 6.0, rtol=1e-6)
    np.testing.assert_allclose(weight(jnp.int32(WARMUP + HALF_LIFE)), 3.0, rtol=1e-6)
    np.testing.assert_allclose(weight(jnp.int32(WARMUP + 2 * HALF_LIFE)), 1.5, rtol=1e-6)
    np.testing.assert_allclose(weight(jnp.int32(WARMUP + 25_000)), 6.0 * 2**-0.5, rtol=1e-6)
    # README recipe: 100K warmup, 300K total -> 6 * 2^-4 = 0.375, then held (clamped) beyond max_steps.
    np.testing.assert_allclose(weight(jnp.int32(300_000)), 0.375, rtol=1e-6)
    np.testing.assert_allclose(weight(jnp.int32(450_000)), 0.375, rtol=1e-6)
    assert float(weight(jnp.int32(WARMUP - 1))) == 0.0 and float(weight(jnp.int32(0))) == 0.0


def test_erw_weight_vmaps_and_defaults():
    steps = jnp.array([0, 50_000, 60_000, 110_000])
    weights = jax.vmap(lambda s: erw_alignment_weight(s, warmup_steps=50_000, initial=1.0))(steps)
    np.testing.assert_allclose(weights, [0.0, 1.0, 2**-0.2, 2**-1.2], rtol=1e-6)
    assert weights.dtype == jnp.float32
    np.testing.assert_allclose(erw_alignment_weight(2_000_000, warmup_steps=0), 6.0 * 2.0**-40, rtol=1e-5)


def test_erw_weight_errors():
    with pytest.raises(ValueError, match="half_life"):
        erw_alignment_weight(0, warmup_steps=0, half_life=0)
    with pytest.raises(ValueError, match="smaller than warmup_steps"):
        erw_alignment_weight(0, warmup_steps=10, max_steps=5)


def test_erw_initial_weight_matches_names_as_the_official_code_does():
    # ERW:train.py get_dynamic_proj_coeff tests the lower-cased model name for "xl" before "l": an XL name, which
    # also contains "l", takes the XL weight, and the match ignores case and the patch size.
    assert erw_initial_weight("SiT-XL/2") == erw_initial_weight("sit-xl/4") > erw_initial_weight("SiT-L/2")
    assert erw_initial_weight("SiT-L/2") == erw_initial_weight("SIT-L/8") > erw_initial_weight("SiT-B/2")
    assert erw_initial_weight("SiT-B/2") == erw_initial_weight("SiT-S/2") == erw_initial_weight("DiT-B/4")
    assert erw_initial_weight("SiT-XL/2") == 6.0  # the c0 of ERW:train.py, used for all its XL/2 runs


def test_the_erw_presets_take_the_weight_of_their_sit():
    for preset in diffusion_configs.PRESETS:
        config = diffusion_configs.get_config(preset)
        if config.align.method == "erw" and config.model.preset:
            assert config.align.coef == erw_initial_weight(f"SiT-{config.model.preset}"), preset


def test_erw_warmup_loss_uses_every_sample():
    rng = np.random.default_rng(0)
    target = jnp.asarray(rng.normal(size=(3, 4, 6)).astype(np.float32))
    projected = target.at[0].set(-target[0])  # sample 0 anti-aligned, samples 1-2 aligned
    # Batch mean of per-token -cos: (1 - 1 - 1) / 3. The released code would see only the last sample
    # and return -1 / 3.
    np.testing.assert_allclose(erw_warmup_loss(projected, target), -1.0 / 3.0, rtol=1e-6)
    np.testing.assert_allclose(erw_warmup_loss(projected, target), repa_loss(projected, target))
    grad = jax.grad(erw_warmup_loss)(projected + 0.1, target)
    assert float(jnp.abs(grad[0]).max()) > 0  # the first sample receives gradient too
    np.testing.assert_array_equal(jax.grad(erw_warmup_loss, argnums=1)(projected, target), 0.0)


def _official_compute_proj_loss(zs, zs_tilde):
    """NumPy transcription of the released `ERW:loss.py` compute_proj_loss @adf125d (bug included): the sample
    loop only normalises the target z_j; the accumulation after it sees the last sample; then / (E * B); the
    caller takes `.mean()` over the remaining token axis."""
    normalize = lambda x: x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)  # noqa: E731
    proj_loss, batch = 0.0, zs[0].shape[0]
    for z, z_tilde in zip(zs, zs_tilde):
        for z_j, z_tilde_j in zip(z, z_tilde):
            z_j = normalize(z_j)
        z_tilde_j = normalize(z_tilde_j)
        proj_loss = proj_loss + (-(z_j * z_tilde_j).sum(-1))
    return float(np.mean(proj_loss / (len(zs) * batch)))


def test_erw_warmup_loss_official_switch_reproduces_the_released_last_sample_loss():
    rng = np.random.default_rng(1)
    target, projected = (rng.normal(size=(4, 5, 6)).astype(np.float32) for _ in range(2))
    official = erw_warmup_loss(jnp.asarray(projected), jnp.asarray(target), official_last_sample=True)
    np.testing.assert_allclose(official, _official_compute_proj_loss([target], [projected]), rtol=1e-6)
    fixed = erw_warmup_loss(jnp.asarray(projected), jnp.asarray(target))
    assert abs(float(fixed) - float(official)) > 1e-3
    grad = jax.grad(lambda p: erw_warmup_loss(p, jnp.asarray(target), official_last_sample=True))(jnp.asarray(projected))
    np.testing.assert_array_equal(grad[:-1], 0.0)  # only the last sample trains, as in the released code


def _sit_params(depth, seed, width=4):
    rng = np.random.default_rng(seed)
    leaf = lambda *shape: jnp.asarray(rng.normal(size=shape).astype(np.float32))  # noqa: E731
    params = {
        "x_embedder": {"proj": {"kernel": leaf(2, 2, 4, width), "bias": leaf(width)}},
        "t_embedder": {"mlp_0": {"kernel": leaf(8, width)}, "mlp_2": {"kernel": leaf(width, width)}},
        "y_embedder": {"embedding_table": leaf(11, width)},
        "final_layer": {"linear": {"kernel": leaf(width, 16)}},
        "projector": {"Dense_0": {"kernel": leaf(width, 3)}},
    }
    for index in range(depth):
        params[f"blocks_{index}"] = {"attn": {"qkv": {"kernel": leaf(width, 3 * width)}},
                                     "adaLN_modulation": {"kernel": leaf(width, 6 * width)}}
    return params


def test_transplant_blocks_copies_l2r_region_only():
    warmup = _sit_params(depth=4, seed=0)
    del warmup["final_layer"]  # ERW's warmup model has no final layer
    fresh = _sit_params(depth=7, seed=1)
    fresh_before = jax.tree.map(np.array, fresh)
    merged = transplant_blocks(warmup, fresh, num_blocks=3, extra_keys=("projector",))
    copied = ["x_embedder", "t_embedder", "y_embedder", "blocks_0", "blocks_1", "blocks_2", "projector"]
    for key in copied:
        chex.assert_trees_all_equal(merged[key], warmup[key])
    for key in ["blocks_3", "blocks_4", "blocks_5", "blocks_6", "final_layer"]:
        chex.assert_trees_all_equal(merged[key], fresh[key])
    assert sorted(merged) == sorted(fresh)
    chex.assert_trees_all_equal(fresh, fresh_before)  # inputs untouched
    without_projector = transplant_blocks(warmup, fresh, num_blocks=4)
    chex.assert_trees_all_equal(without_projector["projector"], fresh["projector"])
    chex.assert_trees_all_equal(without_projector["blocks_3"], warmup["blocks_3"])


def test_transplant_blocks_errors():
    warmup, fresh = _sit_params(depth=4, seed=0), _sit_params(depth=7, seed=1)
    with pytest.raises(KeyError, match="blocks_4"):
        transplant_blocks(warmup, fresh, num_blocks=5)
    with pytest.raises(ValueError, match=r"\['x_embedder', .*'blocks_0', .*\] differ"):
        transplant_blocks(_sit_params(depth=4, seed=0, width=8), fresh, num_blocks=4)
    with pytest.raises(KeyError, match="variables"):
        transplant_blocks({"params": warmup}, {"params": fresh}, num_blocks=4)
    with pytest.raises(KeyError, match="ema"):
        transplant_blocks(warmup, fresh, num_blocks=4, extra_keys=("ema",))
    with pytest.raises(ValueError, match="at least 1"):
        transplant_blocks(warmup, fresh, num_blocks=0)

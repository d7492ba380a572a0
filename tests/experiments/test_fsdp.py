"""FSDP (`param_sharding='fsdp'`) on 8 fake CPU devices: which arrays split, training and sampling equal to the
replicated layout, per-device state bytes down by ~1/8 in the compiled step's memory analysis, and checkpoints
restorable across layouts and device counts."""

import chex
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxrep import parallel
from jaxrep.config_checks import ConfigError
from jaxrep.experiments import diffusion as diffusion_experiment
from jaxrep.experiments import sample as sample_experiment
from jaxrep.run.checkpoint import Checkpointer, abstract_like
from tests.helpers import first_batches, run_steps, tiny_diffusion_config

# Width 128: every weight matrix has >= 2^14 entries, so FSDP splits them; biases and norms stay whole.
WIDE = {"batch_size": 16, "model.hidden_size": 128, "model.num_heads": 4, "optim.eps": 1e-3}


def test_fsdp_spec_splits_the_largest_divisible_axis_of_large_arrays():
    assert parallel.fsdp_spec((128, 384), 8) == P(None, parallel.DATA_AXIS)
    assert parallel.fsdp_spec((512, 128), 8) == P(parallel.DATA_AXIS, None)
    assert parallel.fsdp_spec((256, 256), 8) == P(parallel.DATA_AXIS, None)  # ties: the first axis
    assert parallel.fsdp_spec((4, 4, 3, 1024), 8) == P(None, None, None, parallel.DATA_AXIS)
    assert parallel.fsdp_spec((1000, 30), 8) == P(parallel.DATA_AXIS, None)  # 1000 = 8 x 125
    assert parallel.fsdp_spec((999, 33), 8) == P()  # no axis divisible by 8
    assert parallel.fsdp_spec((128,), 8) == P() and parallel.fsdp_spec((), 8) == P()  # small: replicated
    with pytest.raises(ValueError, match="param_sharding: must be one of"):
        parallel.state_shardings({}, parallel.make_mesh(jax.devices()[:1]), "zero3")
    with pytest.raises(ConfigError, match="^param_sharding: "):
        diffusion_experiment.build_experiment(tiny_diffusion_config(param_sharding="zero3"), jax.devices()[:1])


def copy(state):
    """A copy in the same layout (the jitted step donates its input state)."""
    return jax.tree.map(lambda leaf: leaf.copy(), state)


def split_fraction(tree) -> float:
    """Share of the tree's bytes that live split over the mesh."""
    leaves = jax.tree.leaves(tree)
    split = sum(leaf.nbytes for leaf in leaves if parallel.DATA_AXIS in tuple(leaf.sharding.spec))
    return split / sum(leaf.nbytes for leaf in leaves)


@pytest.fixture(scope="module")
def layouts():
    devices = jax.devices()[:8]
    replicated = diffusion_experiment.build_experiment(tiny_diffusion_config(**WIDE), devices)
    fsdp = diffusion_experiment.build_experiment(tiny_diffusion_config(**WIDE, param_sharding="fsdp"), devices)
    return replicated, fsdp


def test_fsdp_splits_params_ema_and_adam_moments(layouts):
    replicated, fsdp = layouts
    qkv = fsdp.state.params["sit"]["blocks_0"]["attn"]["qkv"]["kernel"]
    assert qkv.shape == (128, 384) and qkv.sharding.spec == P(None, parallel.DATA_AXIS)
    assert qkv.addressable_shards[0].data.shape == (128, 48)
    assert fsdp.state.params["sit"]["blocks_0"]["attn"]["qkv"]["bias"].sharding.spec == P()
    for tree in (fsdp.state.params, fsdp.state.ema_params, fsdp.state.opt_state):
        assert split_fraction(tree) > 0.9
    assert split_fraction(replicated.state.params) == 0.0
    chex.assert_trees_all_equal(fsdp.state.params, replicated.state.params)  # same init


def test_fsdp_training_and_sampling_equal_the_replicated_layout(layouts):
    replicated, fsdp = layouts
    batches = first_batches(replicated.config, replicated.mesh, 3)
    state_r, losses_r = run_steps(replicated.jitted_step, copy(replicated.state), batches)
    state_f, losses_f = run_steps(fsdp.jitted_step, copy(fsdp.state), batches)
    np.testing.assert_allclose(losses_f, losses_r, rtol=1e-5)
    chex.assert_trees_all_close(state_f.params, state_r.params, rtol=1e-4, atol=1e-6)
    assert parallel.shardings_of(state_f) == parallel.shardings_of(fsdp.state)  # the step keeps the layout
    labels, key = np.arange(8, dtype=np.int32) % 3, jax.random.key(0)
    images_r = sample_experiment.make_sharded_sampler(replicated)(state_r.ema_params, labels, key)
    images_f = sample_experiment.make_sharded_sampler(fsdp)(state_f.ema_params, labels, key)
    np.testing.assert_allclose(images_f, images_r, atol=2e-4)


def test_compiled_step_holds_an_eighth_of_the_state_per_device(layouts):
    replicated, fsdp = layouts
    batch = first_batches(replicated.config, replicated.mesh, 1)[0]
    batch_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(batch)) // 8
    per_device = {}
    for name, experiment in (("replicate", replicated), ("fsdp", fsdp)):
        memory = experiment.jitted_step.lower(experiment.state, batch).compile().memory_analysis()
        expected = sum(shard.data.nbytes for leaf in jax.tree.leaves(experiment.state)
                       for shard in leaf.addressable_shards[:1])
        per_device[name] = memory.argument_size_in_bytes - batch_bytes
        np.testing.assert_allclose(per_device[name], expected, rtol=0.01)
    ratio = per_device["fsdp"] / per_device["replicate"]
    assert 1 / 8 <= ratio < 1 / 8 + 0.05, ratio  # the whole-kept biases and norms are a few percent


def test_checkpoints_restore_across_layouts_and_device_counts(layouts, tmp_path):
    replicated, fsdp = layouts
    state_f, _ = run_steps(fsdp.jitted_step, copy(fsdp.state), first_batches(fsdp.config, fsdp.mesh, 1))
    checkpointer = Checkpointer(tmp_path / "fsdp", save_every=1, async_save=False)
    checkpointer.save(1, state_f, {}, force=True)
    checkpointer.close()
    one = diffusion_experiment.build_experiment(tiny_diffusion_config(**WIDE), jax.devices()[:1])
    four = diffusion_experiment.build_experiment(tiny_diffusion_config(**WIDE, param_sharding="fsdp"), jax.devices()[:4])
    for target in (replicated, one, four):
        restored, _ = Checkpointer(tmp_path / "fsdp", save_every=1).restore(abstract_like(target.state))
        chex.assert_trees_all_equal(restored.params, state_f.params)
        assert jax.tree.map(lambda leaf: leaf.sharding, restored.params) == \
            jax.tree.map(lambda leaf: leaf.sharding, target.state.params)
    # And the other way: a replicated 1-device checkpoint into the 8-device FSDP layout.
    checkpointer = Checkpointer(tmp_path / "one", save_every=1, async_save=False)
    checkpointer.save(0, one.state, {}, force=True)
    checkpointer.close()
    restored, _ = Checkpointer(tmp_path / "one", save_every=1).restore(abstract_like(fsdp.state))
    chex.assert_trees_all_equal(restored.params, one.state.params)
    assert split_fraction(restored.params) > 0.9

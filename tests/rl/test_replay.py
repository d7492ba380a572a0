"""jaxrep.rl.replay: ring wraparound, block adds, uniform sampling over filled slots."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.rl import replay


def transitions(values, observation_size=3, action_size=2):
    """Transitions whose every field encodes `values`, so slots can be identified after sampling."""
    v = jnp.asarray(values, jnp.float32)
    return replay.Transitions(
        observation=jnp.tile(v[:, None], (1, observation_size)),
        action=jnp.tile(-v[:, None], (1, action_size)),
        reward=v,
        not_done=jnp.ones_like(v),
        next_observation=jnp.tile(v[:, None] + 0.5, (1, observation_size)),
    )


def test_wraparound_one_at_a_time():
    buffer = replay.init_replay(5, 3, 2)
    for value in range(7):
        buffer = replay.add(buffer, transitions([value]))
    assert int(buffer.size) == 5 and int(buffer.position) == 2 and buffer.capacity == 5
    np.testing.assert_array_equal(buffer.data.reward, [5, 6, 2, 3, 4])  # 0 and 1 overwritten, oldest first
    np.testing.assert_array_equal(buffer.data.observation[:, 0], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buffer.data.next_observation[:, 1], [5.5, 6.5, 2.5, 3.5, 4.5])
    np.testing.assert_array_equal(replay.latest(buffer, 3).reward, [4, 5, 6])


def test_block_add_wraps_and_matches_single_adds():
    single = replay.init_replay(6, 3, 2)
    for value in range(10):
        single = replay.add(single, transitions([value]))
    block = replay.init_replay(6, 3, 2)
    block = replay.add(block, transitions(range(4)))
    block = replay.add(block, transitions(range(4, 10)))  # wraps: 4 5 | 6 7 8 9
    chex.assert_trees_all_equal(single, block)
    np.testing.assert_array_equal(block.data.reward, [6, 7, 8, 9, 4, 5])


def test_adding_more_than_capacity_at_once_fails():
    with pytest.raises(ValueError, match="capacity"):
        replay.add(replay.init_replay(4, 3, 2), transitions(range(5)))


def test_sampling_is_uniform_over_filled_slots_only():
    buffer = replay.add(replay.init_replay(100, 3, 2), transitions(np.arange(1, 11)))  # 10 of 100 slots filled
    sample = jax.jit(replay.sample, static_argnums=2)
    draws = np.concatenate([np.asarray(sample(buffer, jax.random.PRNGKey(i), 1000).reward) for i in range(20)])
    assert set(np.unique(draws)) == set(range(1, 11))  # never an empty (zero) slot
    counts = np.bincount(draws.astype(int), minlength=11)[1:]
    chi_square = np.sum((counts - 2000) ** 2 / 2000)
    assert chi_square < 27.9  # 99.9 % quantile of chi^2 with 9 degrees of freedom
    batch = sample(buffer, jax.random.PRNGKey(0), 7)
    np.testing.assert_array_equal(batch.observation[:, 0], batch.reward)  # fields stay aligned
    np.testing.assert_array_equal(batch.action[:, 1], -batch.reward)
    assert batch.observation.shape == (7, 3) and batch.action.shape == (7, 2)


def test_sampling_after_wraparound_covers_the_whole_ring():
    buffer = replay.init_replay(8, 3, 2)
    buffer = replay.add(buffer, transitions(range(8)))
    buffer = replay.add(buffer, transitions(range(8, 11)))
    draws = np.asarray(replay.sample(buffer, jax.random.PRNGKey(0), 4000).reward)
    assert set(np.unique(draws)) == set(range(3, 11))

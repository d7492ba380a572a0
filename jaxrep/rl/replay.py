"""Fixed-capacity FIFO replay buffer held as device arrays (BEER's utils.ReplayBuffer, without the host copy).

The buffer is a pytree, so it is checkpointed with the train state and passed into jitted updates, where
batches are sampled on the device. `add` writes a block of transitions at the ring position (wrapping
around); `sample` draws uniformly with replacement from the filled slots (`np.random.randint` in the
official code).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp


class Transitions(NamedTuple):
    """A batch of transitions; leading axis N (or B)."""

    observation: jax.Array  # (N, obs_size)
    action: jax.Array  # (N, A)
    reward: jax.Array  # (N,)
    not_done: jax.Array  # (N,) 0 at terminal states, 1 otherwise (time limits are not terminal)
    next_observation: jax.Array  # (N, obs_size), the real next state, also at a time limit


class ReplayBuffer(flax.struct.PyTreeNode):
    """Ring buffer of `capacity` transitions.

    Attributes:
      data: `Transitions` with leading axis `capacity`.
      position: int32 scalar, the slot the next transition goes to.
      size: int32 scalar, number of filled slots (<= capacity).
    """

    data: Transitions
    position: jax.Array
    size: jax.Array

    @property
    def capacity(self) -> int:
        return self.data.reward.shape[0]


def init_replay(capacity: int, observation_size: int, action_size: int) -> ReplayBuffer:
    """An empty buffer, float32 throughout."""
    zeros = lambda *shape: jnp.zeros(shape, jnp.float32)
    data = Transitions(
        observation=zeros(capacity, observation_size),
        action=zeros(capacity, action_size),
        reward=zeros(capacity),
        not_done=zeros(capacity),
        next_observation=zeros(capacity, observation_size),
    )
    return ReplayBuffer(data=data, position=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32))


@functools.partial(jax.jit, donate_argnums=0)
def add(buffer: ReplayBuffer, transitions: Transitions) -> ReplayBuffer:
    """Writes N <= capacity transitions (leading axis N) at the ring position, overwriting the oldest."""
    count = transitions.reward.shape[0]
    if count > buffer.capacity:
        raise ValueError(f"cannot add {count} transitions at once to a buffer of capacity {buffer.capacity}")
    slots = (buffer.position + jnp.arange(count)) % buffer.capacity
    data = jax.tree.map(lambda stored, new: stored.at[slots].set(new.astype(stored.dtype)),
                        buffer.data, transitions)
    return ReplayBuffer(
        data=data,
        position=(buffer.position + count) % buffer.capacity,
        size=jnp.minimum(buffer.size + count, buffer.capacity),
    )


def sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Transitions:
    """`batch_size` transitions drawn uniformly with replacement from the filled slots (jit-friendly)."""
    slots = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda stored: stored[slots], buffer.data)


def latest(buffer: ReplayBuffer, count: int) -> Transitions:
    """The `count` most recently added transitions, oldest first (host-side helper; count <= size)."""
    slots = (buffer.position - count + jnp.arange(count)) % buffer.capacity
    return jax.tree.map(lambda stored: stored[slots], buffer.data)

"""Many independent fused runs in one program: `jax.vmap` of `FusedDDPG` over seeds and a grid of BEER weights.

Member m of a population of S seeds and C BEER coefficients is (seed index m % S, coefficient m // S): every
coefficient sees the same S seeds (common random numbers across the grid). Each member has its own carry, so
the train state, replay buffer, env states, counters and keys all get a leading member axis of size S * C; the
members never interact, so member m is the single run of its key and coefficient up to float reassociation of
the batched matmuls. The members step in lockstep, so the uniform-random phase is one scalar predicate for all
of them and its updates are skipped under a real `lax.cond` (a `lax.cond` inside `vmap` would become a select
and compute the discarded updates). A population of one runs the fused loop unbatched, so it is bitwise the
single run.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxrep.rl import replay
from jaxrep.rl.fused import FusedDDPG, FusedState

__all__ = ["Population"]


@dataclasses.dataclass(frozen=True)
class Population:
    """`num_seeds` x len(`beer_coefs`) members of `fused` (hashable: jit its methods with `self` static).

    Attributes:
      fused: the single-run loop; its agent's BEER settings apart from the coefficient hold for every member.
      num_seeds: seeds per coefficient.
      beer_coefs: BEER weights (beta) of the grid; empty keeps the agent's own (or plain DDPG).
    """

    fused: FusedDDPG
    num_seeds: int = 1
    beer_coefs: tuple[float, ...] = ()

    def __post_init__(self):
        if self.num_seeds < 1:
            raise ValueError(f"num_seeds: must be >= 1, got {self.num_seeds}")
        if self.beer_coefs and self.fused.agent.beer is None:
            raise ValueError("beer_coefs: a coefficient grid needs a BEER agent (method 'beer')")

    @property
    def num_members(self) -> int:
        return self.num_seeds * max(1, len(self.beer_coefs))

    def members(self) -> list[dict]:
        """[{"seed_index", "beer_coef"}] per member, in member order (beer_coef None without a grid)."""
        coefs = self.beer_coefs or (None,)
        return [{"seed_index": m % self.num_seeds, "beer_coef": coefs[m // self.num_seeds]}
                for m in range(self.num_members)]

    def _member(self, coef: jax.Array | None) -> FusedDDPG:
        """The loop of one member; `coef` may be traced (the agent is rebuilt inside the vmapped function)."""
        if coef is None:
            return self.fused
        agent = self.fused.agent
        return dataclasses.replace(self.fused, agent=dataclasses.replace(
            agent, beer=dataclasses.replace(agent.beer, coef=coef)))

    def _coefs(self) -> jax.Array | None:
        if not self.beer_coefs:
            return None
        return jnp.repeat(jnp.asarray(self.beer_coefs, jnp.float32), self.num_seeds)

    def _map(self, fn, *args):
        """`jax.vmap(fn)(*args)`; one member runs `fn` unbatched on its squeezed args (keeping `lax.cond`)."""
        if self.num_members > 1:
            return jax.vmap(fn)(*args)
        squeezed = jax.tree.map(lambda leaf: leaf[0], args)
        return jax.tree.map(lambda leaf: leaf[None], fn(*squeezed))

    def init(self, keys: jax.Array, replay_capacity: int) -> FusedState:
        """Carries of every member from their init keys (num_members,); `FusedDDPG.init` of each."""
        if keys.shape[0] != self.num_members:
            raise ValueError(f"keys: {keys.shape[0]} keys for {self.num_members} members")
        return self._map(lambda key: self.fused.init(key, replay_capacity), keys)

    def run(self, state: FusedState, num_iterations: int) -> tuple[FusedState, dict[str, jax.Array]]:
        """`FusedDDPG.run` of every member; the summary's entries get a leading member axis.

        Two or more members: one `lax.scan` over iterations of the vmapped collect step and the vmapped
        updates. The members step in lockstep (one env_step), so whether an iteration updates is one scalar,
        read from member 0, and the updates stay under a real `lax.cond`: the random phase runs none.
        """
        if self.num_members == 1:
            return self._map(lambda s: self.fused.run(s, num_iterations), state)
        fused, coefs = self.fused, self._coefs()

        def train_members(agents, buffers):
            train = lambda agent, buffer, coef: self._member(coef).agent.train(
                agent, buffer, fused.updates_per_iteration)
            if coefs is None:
                return jax.vmap(lambda agent, buffer: train(agent, buffer, None))(agents, buffers)
            return jax.vmap(train)(agents, buffers, coefs)

        def iteration(states, _):
            states, info = jax.vmap(fused.collect)(states)
            if fused.updates_per_iteration > 0:
                updated = fused.learning(states.env_step[0])
                agents, metrics = fused.train_or_skip(states.agent, states.buffer, updated, train=train_members)
                states = states.replace(agent=agents)
                info.update(metrics, updated=jnp.broadcast_to(updated, (self.num_members,)))
            return states, info

        state, info = jax.lax.scan(iteration, state, length=num_iterations)
        return state, jax.vmap(fused.summarize, in_axes=1)(info)

    def representation_metrics(self, state: FusedState, keys: jax.Array, batch_size: int) -> dict[str, jax.Array]:
        """`DDPG.representation_metrics` (srank, BEER's cosine and bound) of every member on `batch_size`
        transitions of its own buffer sampled with keys[m]; entries (num_members,)."""
        agent = self.fused.agent  # the members differ only in BEER's weight, which these metrics do not use

        def one(member: FusedState, key: jax.Array) -> dict[str, jax.Array]:
            return agent.representation_metrics(member.agent, replay.sample(member.buffer, key, batch_size))

        return self._map(one, state, keys)

    def evaluate(self, params, keys: jax.Array) -> dict[str, jax.Array]:
        """`FusedDDPG.evaluate` of every member, entries (num_members, num_envs); member m's resets keyed by keys[m]."""
        return self._map(self.fused.evaluate, params, keys)

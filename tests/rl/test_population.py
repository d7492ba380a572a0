"""jaxrep.rl.population: member i of a vmapped population equals the single fused run of its key (and BEER
weight), every member resumes bitwise after a checkpoint, and evaluation is per member."""

import dataclasses
import functools

import chex
import jax
import numpy as np
import pytest

from jaxrep.rl.ddpg import DDPG, BeerOptions
from jaxrep.rl.fused import FusedDDPG
from jaxrep.rl.networks import Actor, Critic
from jaxrep.rl.population import Population
from jaxrep.run.checkpoint import Checkpointer, abstract_like
from tests.rl.line_env import LineEnv
from tests.rl.line_env import run_chunks as run_line_chunks

NUM_ENVS, STEPS_PER_EPISODE, ITERATIONS, START_STEPS, UPDATES, CAPACITY, CHUNKS = 4, 5, 5, 8, 2, 48, 3
run_chunks = functools.partial(run_line_chunks, iterations=ITERATIONS)


def fused_loop(beer_coef: float | None = 1e-2) -> FusedDDPG:
    beer = None if beer_coef is None else BeerOptions(coef=beer_coef)
    agent = DDPG(Actor(1, (16, 16)), Critic((16, 16)), start_steps=START_STEPS, batch_size=8, beer=beer)
    return FusedDDPG(agent, LineEnv(NUM_ENVS, STEPS_PER_EPISODE), updates_per_iteration=UPDATES)


def single_run(fused: FusedDDPG, key):
    init = jax.jit(lambda k: fused.init(k, CAPACITY))
    return run_chunks(jax.jit(fused.run, static_argnums=1), init(key), CHUNKS)


def population_run(population: Population, keys):
    init = jax.jit(lambda k: population.init(k, CAPACITY))
    return run_chunks(jax.jit(population.run, static_argnums=1), init(keys), CHUNKS)


def member(tree, index):
    return jax.tree.map(lambda leaf: leaf[index], tree)


def assert_close(actual, expected):
    chex.assert_trees_all_close(actual, expected, rtol=2e-5, atol=2e-6)


def test_member_i_of_n_seeds_is_the_single_run_of_seed_i():
    population = Population(fused_loop(), num_seeds=3)
    keys = jax.vmap(jax.random.PRNGKey)(np.arange(3))
    state, summaries = population_run(population, keys)
    assert state.env_step.shape == (3,) and state.buffer.data.reward.shape == (3, CAPACITY)
    assert summaries[-1]["critic/td_loss"].shape == (3,)
    for index in (0, 2):
        alone, alone_summaries = single_run(population.fused, jax.random.PRNGKey(index))
        assert int(alone.agent.step) == UPDATES * sum(1 for i in range(1, 16) if i * NUM_ENVS > START_STEPS) == 26
        assert_close(member(state, index), alone)
        assert_close([member(s, index) for s in summaries], alone_summaries)
    # The seeds differ (not one run copied three times).
    assert not np.allclose(state.agent.params["critic"]["head"]["kernel"][0],
                           state.agent.params["critic"]["head"]["kernel"][1])


def test_beer_grid_members_are_the_runs_with_their_weights():
    population = Population(fused_loop(), num_seeds=2, beer_coefs=(0.0, 0.5))
    assert population.num_members == 4
    assert population.members() == [{"seed_index": 0, "beer_coef": 0.0}, {"seed_index": 1, "beer_coef": 0.0},
                                    {"seed_index": 0, "beer_coef": 0.5}, {"seed_index": 1, "beer_coef": 0.5}]
    keys = jax.vmap(jax.random.PRNGKey)(np.array([0, 1, 0, 1]))
    state, summaries = population_run(population, keys)
    for index, coef in ((1, 0.0), (2, 0.5)):
        alone, _ = single_run(fused_loop(coef), jax.random.PRNGKey(index % 2))
        assert_close(member(state, index), alone)
    # beta = 0 leaves BEER's term at zero; beta = 0.5 weights the same hinge; the two seeds-0 runs part ways.
    assert np.all(summaries[-1]["beer/loss"][:2] == 0.0) and np.all(summaries[-1]["beer/loss"][2:] >= 0.0)
    assert not np.allclose(state.agent.params["critic"]["head"]["kernel"][0],
                           state.agent.params["critic"]["head"]["kernel"][2])
    with pytest.raises(ValueError, match="beer_coefs: a coefficient grid needs a BEER agent"):
        Population(fused_loop(None), num_seeds=2, beer_coefs=(0.1,))
    with pytest.raises(ValueError, match="keys: 2 keys for 4 members"):
        population.init(keys[:2], CAPACITY)


def test_population_resumes_bitwise_for_every_member(tmp_path):
    population = Population(fused_loop(), num_seeds=2)
    keys = jax.vmap(jax.random.PRNGKey)(np.arange(2))
    init = jax.jit(lambda k: population.init(k, CAPACITY))
    run = jax.jit(population.run, static_argnums=1)
    uninterrupted, _ = run_chunks(run, init(keys), 4)
    first, _ = run_chunks(run, init(keys), 2)
    checkpointer = Checkpointer(tmp_path / "checkpoints", save_every=1)
    checkpointer.save(2, first, {"chunk": 2})
    checkpointer.close()
    restored, _ = Checkpointer(tmp_path / "checkpoints", save_every=1).restore(abstract_like(init(keys)))
    resumed, _ = run_chunks(run, restored, 2)
    chex.assert_trees_all_equal(resumed, uninterrupted)
    assert not np.array_equal(resumed.agent.params["critic"]["head"]["kernel"],
                              first.agent.params["critic"]["head"]["kernel"])


def test_evaluation_is_per_member():
    population = Population(fused_loop(None), num_seeds=2)
    state = jax.jit(lambda k: population.init(k, CAPACITY))(jax.vmap(jax.random.PRNGKey)(np.arange(2)))
    eval_keys = jax.vmap(jax.random.PRNGKey)(np.array([5, 6]))
    outcome = jax.jit(population.evaluate)(state.agent.params, eval_keys)
    assert outcome["return"].shape == (2, NUM_ENVS)
    for index in range(2):
        alone = jax.jit(population.fused.evaluate)(member(state.agent.params, index), eval_keys[index])
        for name in ("return", "mc_return", "q_estimate"):
            np.testing.assert_allclose(outcome[name][index], alone[name], rtol=1e-5, atol=1e-6)
    assert dataclasses.replace(population, num_seeds=3).num_members == 3


def test_a_population_of_one_is_bitwise_the_single_run():
    population = Population(fused_loop(), num_seeds=1)
    state, summaries = population_run(population, jax.random.PRNGKey(4)[None])
    alone, alone_summaries = single_run(population.fused, jax.random.PRNGKey(4))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[0], b), state, alone)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[0], b), summaries, alone_summaries)


def equations(jaxpr):
    """Every equation of a jaxpr and of the jaxprs inside its equations (scan bodies, cond branches)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for inner in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(inner, "jaxpr", inner)  # ClosedJaxpr -> Jaxpr
                if hasattr(inner, "eqns"):
                    yield from equations(inner)


def test_the_random_phase_skips_every_members_updates_under_one_cond():
    # Under vmap a per-member lax.cond becomes a select that computes the discarded updates; the population
    # hoists the phase predicate (one scalar) so its program keeps a real cond around the vmapped updates.
    population = Population(fused_loop(), num_seeds=2)
    state = jax.eval_shape(lambda keys: population.init(keys, CAPACITY), jax.vmap(jax.random.PRNGKey)(np.arange(2)))
    program = jax.make_jaxpr(population.run, static_argnums=1)(state, ITERATIONS).jaxpr
    conds = [eqn for eqn in equations(program) if eqn.primitive.name == "cond"]
    assert len(conds) == 1 and conds[0].invars[0].aval.shape == ()  # one scalar predicate
    skip, train = (branch.jaxpr for branch in conds[0].params["branches"])
    assert not any(eqn.primitive.name == "dot_general" for eqn in equations(skip))
    assert any(eqn.primitive.name == "dot_general" for eqn in equations(train))  # the updates run inside it

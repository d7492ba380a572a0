"""jaxrep.rl.ddpg: the pure update (order, targets, TD target, BEER switch), fused updates, exploration."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.rl import replay
from jaxrep.rl.ddpg import DDPG, BeerOptions, actor_loss, critic_loss
from jaxrep.rl.networks import Actor, Critic
from jaxrep.train_state import step_key

OBS, ACT, BATCH = 5, 2, 16


def make_agent(beer=BeerOptions(), **kwargs):
    return DDPG(actor=Actor(ACT, (32, 32)), critic=Critic((32, 32)), batch_size=BATCH, beer=beer, **kwargs)


def random_batch(key, size=BATCH, not_done=1.0):
    keys = jax.random.split(key, 3)
    return replay.Transitions(
        observation=jax.random.normal(keys[0], (size, OBS)),
        action=jax.random.uniform(keys[1], (size, ACT), minval=-1, maxval=1),
        reward=jnp.linspace(-1.0, 2.0, size),
        not_done=jnp.full((size,), not_done),
        next_observation=jax.random.normal(keys[2], (size, OBS)),
    )


@pytest.fixture(scope="module")
def agent():
    return make_agent()


@pytest.fixture(scope="module")
def state(agent):
    state = agent.init(jax.random.PRNGKey(0), OBS, ACT)
    # Move the online nets away from the targets so the Polyak and TD checks are not trivial.
    return jax.jit(agent.update)(state, random_batch(jax.random.PRNGKey(9)))[0]


def test_update_is_pure_and_compiles_once(agent, state):
    traces = []

    def counted_update(state, batch):
        traces.append(None)
        return agent.update(state, batch)

    update = jax.jit(counted_update)
    before = jax.tree.map(np.array, state)
    batch = random_batch(jax.random.PRNGKey(1))
    first, metrics = update(state, batch)
    again, metrics_again = update(state, batch)
    chex.assert_trees_all_equal(first, again)  # same inputs, same outputs
    chex.assert_trees_all_equal(metrics, metrics_again)
    chex.assert_trees_all_equal(before, state)  # inputs untouched
    update(first, random_batch(jax.random.PRNGKey(2)))  # new values, same shapes
    assert len(traces) == 1
    assert int(first.step) == int(state.step) + 1
    assert all(np.isfinite(float(v)) for v in metrics.values())


def test_critic_then_actor_then_polyak_targets(agent, state):
    batch = random_batch(jax.random.PRNGKey(3))
    new, metrics = jax.jit(agent.update)(state, batch)
    # Every parameter of both networks moves on every update (no policy delay).
    for name in ("actor", "critic"):
        changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), new.params[name], state.params[name])
        assert all(jax.tree.leaves(changed))
    # The actor loss is evaluated with the *updated* critic and the old actor.
    q = agent.critic.apply({"params": new.params["critic"]}, batch.observation,
                           agent.policy(state.params["actor"], batch.observation))
    np.testing.assert_allclose(metrics["actor/loss"], -jnp.mean(q), rtol=1e-5)
    # Targets: (1 - tau) * old target + tau * new online params.
    expected = jax.tree.map(lambda t, p: 0.995 * t + 0.005 * p, state.ema_params, new.params)
    chex.assert_trees_all_close(new.ema_params, expected, rtol=1e-6)


def test_td_target_bootstraps_only_through_non_terminal_transitions(agent, state):
    update = jax.jit(agent.update)
    terminal = random_batch(jax.random.PRNGKey(4), not_done=0.0)
    _, metrics = update(state, terminal)
    np.testing.assert_allclose(metrics["critic/td_target"], jnp.mean(terminal.reward), rtol=1e-6)
    _, metrics = update(state, terminal._replace(not_done=jnp.ones(BATCH)))
    next_q = agent.critic.apply({"params": state.ema_params["critic"]}, terminal.next_observation,
                                agent.policy(state.ema_params["actor"], terminal.next_observation))
    np.testing.assert_allclose(metrics["critic/td_target"], jnp.mean(terminal.reward + 0.99 * next_q), rtol=1e-5)


def test_beer_with_zero_weight_is_plain_ddpg_and_beer_changes_the_critic(state):
    batch = random_batch(jax.random.PRNGKey(5))
    plain, plain_metrics = jax.jit(make_agent(beer=None).update)(state, batch)
    zero, _ = jax.jit(make_agent(beer=BeerOptions(coef=0.0)).update)(state, batch)
    chex.assert_trees_all_equal(plain.params, zero.params)
    assert "beer/loss" not in plain_metrics
    # A large weight with the bound active on part of the batch moves the critic differently.
    strong, metrics = jax.jit(make_agent(beer=BeerOptions(coef=10.0, gamma=0.1)).update)(state, batch)
    assert float(metrics["beer/active_fraction"]) > 0 and float(metrics["beer/loss"]) > 0
    assert np.any(np.asarray(strong.params["critic"]["hidden_0"]["kernel"])
                  != np.asarray(plain.params["critic"]["hidden_0"]["kernel"]))


def test_fused_updates_equal_sequential_updates(agent, state):
    buffer = replay.add(replay.init_replay(64, OBS, ACT), random_batch(jax.random.PRNGKey(6), size=40))
    fused, fused_metrics = jax.jit(agent.train, static_argnames="num_updates")(state, buffer, num_updates=3)
    update, sequential, losses = jax.jit(agent.update), state, []
    for _ in range(3):
        batch = replay.sample(buffer, step_key(sequential.rng, sequential.step), BATCH)
        sequential, metrics = update(sequential, batch)
        losses.append(metrics["critic/td_loss"])
    chex.assert_trees_all_close(fused, sequential, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused_metrics["critic/td_loss"], np.mean(losses), rtol=1e-5)


def test_exploration(agent, state):
    act = jax.jit(agent.act)
    observation = jnp.ones(OBS)
    other_params = agent.init(jax.random.PRNGKey(42), OBS, ACT).params["actor"]
    key = jax.random.PRNGKey(7)
    # Uniform random actions before start_steps, whatever the actor.
    early = act(state.params["actor"], observation, key, 10)
    np.testing.assert_array_equal(early, act(other_params, observation, key, 10))
    draws = np.stack([act(state.params["actor"], observation, jax.random.PRNGKey(i), 0) for i in range(300)])
    assert np.all(np.abs(draws) <= 1) and abs(draws.mean()) < 0.1 and draws.std() > 0.5
    # After: clip(pi(s) + 0.1 * N(0, 1), -1, 1), reproducible from the key.
    late = act(state.params["actor"], observation, key, agent.start_steps)
    noise = 0.1 * jax.random.normal(jax.random.split(key)[1], (ACT,))
    np.testing.assert_allclose(late, jnp.clip(agent.policy(state.params["actor"], observation) + noise, -1, 1),
                               rtol=1e-6)
    np.testing.assert_array_equal(late, act(state.params["actor"], observation, key, agent.start_steps))


def test_representation_metrics(agent, state):
    metrics = jax.jit(agent.representation_metrics)(state, random_batch(jax.random.PRNGKey(8), size=64))
    assert 1 <= int(metrics["rank/srank"]) <= 32
    assert 1.0 <= float(metrics["rank/effective_rank"]) <= 32.0
    assert 0.0 <= float(metrics["bound/active_fraction"]) <= 1.0
    assert -1.0 <= float(metrics["bound/cosine"]) <= 1.0


def test_invalid_beer_form():
    with pytest.raises(ValueError, match="form"):
        BeerOptions(form="paper")


def test_critic_loss_is_the_td_mean_squared_error_by_hand():
    q = np.array([1.0, -0.5, 2.0, 0.25], np.float32)
    reward = np.array([0.5, 1.0, -1.0, 0.0], np.float32)
    not_done = np.array([1.0, 0.0, 1.0, 1.0], np.float32)
    next_q = np.array([2.0, 7.0, -3.0, 1.5], np.float32)
    target = reward + 0.9 * not_done * next_q  # y = r + gamma (1 - done) Q'(s', pi'(s'))
    loss, td_target = critic_loss(q, reward, not_done, next_q, 0.9)
    np.testing.assert_allclose(td_target, target, rtol=1e-6)
    np.testing.assert_allclose(loss, np.mean((q - target) ** 2), rtol=1e-6)
    grad_q, grad_next = jax.grad(lambda q, n: critic_loss(q, reward, not_done, n, 0.9)[0], argnums=(0, 1))(q, next_q)
    np.testing.assert_allclose(grad_q, 2.0 * (q - target) / q.size, rtol=1e-6)
    np.testing.assert_array_equal(grad_next, 0.0)  # the target is held constant


def test_actor_loss_is_minus_the_mean_q():
    q = np.array([1.0, -3.0, 0.5], np.float32)
    np.testing.assert_allclose(actor_loss(q), -np.mean(q), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(actor_loss)(q), -np.ones(3) / 3, rtol=1e-6)


def test_critic_objective_uses_the_target_networks_td_target():
    agent = make_agent(beer=None, discount=0.9)
    state = agent.init(jax.random.key(0), OBS, ACT)
    batch = random_batch(jax.random.key(1), not_done=0.0)._replace(not_done=jnp.arange(BATCH) % 2 * 1.0)
    target = state.ema_params
    next_q = agent.critic.apply({"params": target["critic"]}, batch.next_observation,
                                agent.policy(target["actor"], batch.next_observation))
    q = agent.critic.apply({"params": state.params["critic"]}, batch.observation, batch.action)
    y = np.asarray(batch.reward) + 0.9 * np.asarray(batch.not_done) * np.asarray(next_q)
    loss, metrics = agent.critic_objective(state.params["critic"], state.params, target, batch)
    np.testing.assert_allclose(loss, np.mean((np.asarray(q) - y) ** 2), rtol=1e-5)
    np.testing.assert_allclose(metrics["critic/td_target"], y.mean(), rtol=1e-5)

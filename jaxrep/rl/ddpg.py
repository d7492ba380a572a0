"""DDPG with an optional BEER critic regulariser, as in the official BEER code (BEER.py, TD3 lineage).

Single critic, actor updated after every critic step, Polyak-averaged targets for both networks, Gaussian
exploration noise N(0, sigma^2) added to the tanh actor and clipped to [-1, 1], uniform random actions for the
first `start_steps` env steps. No target-policy smoothing, no policy delay (that would be TD3 / cleanrl's
DDPG with `policy_frequency=2`).

Everything is a pure function of (state, data):
- `critic_loss`, `actor_loss`: the two objectives as pure functions of Q values (also in `jaxrep.losses`).
- `DDPG.update(state, batch) -> (state, metrics)`: critic (+BEER) step, actor step with the *updated* critic,
  then the Polyak targets, in that order (BEER.py `train`).
- `DDPG.train(state, buffer, num_updates)`: `num_updates` updates fused by `lax.scan`, each on a batch
  sampled on the device with the key `fold_in(state.rng, state.step)`.
- `DDPG.act(...)`: exploration, keyed by the caller (`fold_in(explore_key, env_step)`).
The train state is the shared `TrainState`: `params = {"actor", "critic"}`, `ema_params` = the targets
(Polyak with decay 1 - tau via `ema_update`), `opt_state = {"actor", "critic"}` (two Adam states).
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import optax

from jaxrep.metrics.representation import effective_rank, srank
from jaxrep.rl import replay
from jaxrep.rl.beer import FORMS, beer_loss_and_stats
from jaxrep.rl.networks import Actor, Critic, critic_head_kernel
from jaxrep.train_state import TrainState, ema_update, step_key


def _squared_td_errors(q: jax.Array, reward: jax.Array, not_done: jax.Array, next_q_target: jax.Array,
                       discount: float) -> tuple[jax.Array, jax.Array]:
    """((Q - y)^2 (B,), y (B,)) with the TD target y held constant."""
    chex.assert_equal_shape([q, reward, not_done, next_q_target])
    td_target = jax.lax.stop_gradient(reward + discount * not_done * next_q_target)
    return jnp.square(q - td_target), td_target


def critic_loss_per_example(q: jax.Array, reward: jax.Array, not_done: jax.Array, next_q_target: jax.Array,
                            discount: float) -> jax.Array:
    """The squared TD error per transition, (B,): (Q(s, a) - y)^2 with y = r + gamma (1 - done) Q'(s', pi'(s'))
    held constant (Lillicrap et al. 2016, Eq. 4-5). Shapes as in `critic_loss`."""
    return _squared_td_errors(q, reward, not_done, next_q_target, discount)[0]


def critic_loss(q: jax.Array, reward: jax.Array, not_done: jax.Array, next_q_target: jax.Array,
                discount: float) -> tuple[jax.Array, jax.Array]:
    """DDPG critic loss (Lillicrap et al. 2016, Eq. 4-5; BEER.py `train`): the TD mean squared error

        y = r + gamma (1 - done) Q'(s', pi'(s')),    L_critic = mean_B (Q(s, a) - y)^2

    with y held constant (no gradient through the target networks).

    Args:
      q: (B,) Q(s, a) of the online critic.
      reward: (B,) r.
      not_done: (B,) 1 - done (0 at a true terminal, 1 at a time-limit truncation).
      next_q_target: (B,) Q'(s', pi'(s')) of the target critic and actor.
      discount: gamma.
    Returns:
      (loss, td_target): the scalar loss and y, (B,).
    """
    errors, td_target = _squared_td_errors(q, reward, not_done, next_q_target, discount)
    return jnp.mean(errors), td_target


def actor_loss_per_example(q: jax.Array) -> jax.Array:
    """-Q(s, pi(s)) per state, (B,) (Lillicrap et al. 2016, Eq. 6); q: (B,)."""
    chex.assert_rank(q, 1)
    return -q


def actor_loss(q: jax.Array) -> jax.Array:
    """DDPG actor loss (Lillicrap et al. 2016, Eq. 6, the deterministic policy gradient as a loss):

        L_actor = -mean_B Q(s, pi(s))

    q: (B,) Q(s, pi(s)) of the online critic at the actor's actions; returns a scalar.
    """
    return jnp.mean(actor_loss_per_example(q))


@dataclasses.dataclass(frozen=True)
class BeerOptions:
    """BEER regulariser settings (see `jaxrep.rl.beer`)."""

    coef: float = 1e-3  # beta, the hinge's weight in the critic loss
    gamma: float = 0.99  # discount inside the bound; the official code hard-codes 0.99
    form: str = "official"  # "official" (mixed feature sources) or "clean" (one source)

    def __post_init__(self):
        if self.form not in FORMS:
            raise ValueError(f"BEER form must be one of {FORMS}, got {self.form!r}")


@dataclasses.dataclass(frozen=True)
class DDPG:
    """Hyperparameters and networks; hashable, so its methods can be jitted with `self` static."""

    actor: Actor
    critic: Critic
    actor_learning_rate: float = 3e-4
    critic_learning_rate: float = 3e-4
    discount: float = 0.99  # gamma of the TD target
    tau: float = 0.005  # Polyak rate: target <- (1 - tau) target + tau online
    exploration_noise: float = 0.1  # std of the Gaussian added to the actor's action
    start_steps: int = 25_000  # env steps with uniform random actions
    batch_size: int = 256
    beer: BeerOptions | None = None  # None: plain DDPG

    @property
    def actor_optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.actor_learning_rate)

    @property
    def critic_optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.critic_learning_rate)

    def init(self, key: jax.Array, observation_size: int, action_size: int) -> TrainState:
        """Fresh state; `key` seeds the parameters and becomes the root of the per-update sampling keys."""
        actor_key, critic_key, sample_key = jax.random.split(key, 3)
        observation = jnp.zeros((1, observation_size), jnp.float32)
        action = jnp.zeros((1, action_size), jnp.float32)
        params = {
            "actor": self.actor.init(actor_key, observation)["params"],
            "critic": self.critic.init(critic_key, observation, action)["params"],
        }
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            ema_params=jax.tree.map(jnp.copy, params),
            opt_state={
                "actor": self.actor_optimizer.init(params["actor"]),
                "critic": self.critic_optimizer.init(params["critic"]),
            },
            rng=sample_key,
        )

    # ---- acting --------------------------------------------------------------------------------------

    def policy(self, actor_params, observation: jax.Array) -> jax.Array:
        """Deterministic action pi(s) in [-1, 1]^A (evaluation). observation: (..., obs_size)."""
        return self.actor.apply({"params": actor_params}, observation)

    def value(self, params, observation: jax.Array) -> jax.Array:
        """The critic's estimate Q(s, pi(s)) of the policy's discounted return from `observation` (..., obs_size)
        (evaluation: compared with the Monte-Carlo return of the same episode, BEER's Q-estimation error)."""
        q, _ = self._critic(params["critic"], observation, self.policy(params["actor"], observation))
        return q

    def act(self, actor_params, observation: jax.Array, key: jax.Array, env_step: jax.Array) -> jax.Array:
        """Exploration action for one observation (obs_size,) -> (A,).

        Uniform on [-1, 1]^A while `env_step < start_steps`, else clip(pi(s) + N(0, sigma^2), -1, 1).
        """
        uniform_key, noise_key = jax.random.split(key)
        action_size = self.actor.action_size
        uniform = jax.random.uniform(uniform_key, (action_size,), jnp.float32, -1.0, 1.0)
        noise = self.exploration_noise * jax.random.normal(noise_key, (action_size,), jnp.float32)
        noisy = jnp.clip(self.policy(actor_params, observation) + noise, -1.0, 1.0)
        return jnp.where(env_step < self.start_steps, uniform, noisy)

    # ---- learning ------------------------------------------------------------------------------------

    def _critic(self, critic_params, observation, action):
        return self.critic.apply({"params": critic_params}, observation, action, return_features=True)

    def critic_objective(self, critic_params, params, target_params, batch: replay.Transitions):
        """`critic_loss` on `batch` through the networks, plus BEER if enabled; (loss, metrics)."""
        next_action_target = self.policy(target_params["actor"], batch.next_observation)
        next_q_target, next_phi_target = self._critic(target_params["critic"], batch.next_observation,
                                                      next_action_target)
        q, phi = self._critic(critic_params, batch.observation, batch.action)
        td_loss, td_target = critic_loss(q, batch.reward, batch.not_done, next_q_target, self.discount)
        metrics = {"critic/td_loss": td_loss, "critic/q": jnp.mean(q), "critic/td_target": jnp.mean(td_target)}
        loss = td_loss
        if self.beer is not None:
            # phi' of the online critic and actor: no gradient (BEER.py computes it under no_grad).
            _, next_phi = self._critic(critic_params, batch.next_observation,
                                       self.policy(params["actor"], batch.next_observation))
            beer, stats = beer_loss_and_stats(
                phi, next_phi, next_phi_target, batch.reward, critic_head_kernel(critic_params),
                gamma=self.beer.gamma, coef=self.beer.coef, form=self.beer.form)
            loss = loss + beer
            metrics["beer/loss"] = beer
            metrics.update({f"beer/{name}": value for name, value in stats.items()})
        return loss, metrics

    def actor_objective(self, actor_params, critic_params, observation):
        """`actor_loss` of pi(s) through the online critic."""
        return actor_loss(self.critic.apply({"params": critic_params}, observation,
                                            self.policy(actor_params, observation)))

    def update(self, state: TrainState, batch: replay.Transitions) -> tuple[TrainState, dict[str, jax.Array]]:
        """One DDPG(+BEER) step on `batch` (leading axis B): critic, then actor, then targets."""
        params, target_params, opt_state = state.params, state.ema_params, state.opt_state

        (_, metrics), critic_grads = jax.value_and_grad(self.critic_objective, has_aux=True)(
            params["critic"], params, target_params, batch)
        critic_updates, critic_opt = self.critic_optimizer.update(critic_grads, opt_state["critic"], params["critic"])
        critic_params = optax.apply_updates(params["critic"], critic_updates)

        actor_value, actor_grads = jax.value_and_grad(self.actor_objective)(params["actor"], critic_params,
                                                                            batch.observation)
        actor_updates, actor_opt = self.actor_optimizer.update(actor_grads, opt_state["actor"], params["actor"])
        actor_params = optax.apply_updates(params["actor"], actor_updates)

        new_params = {"actor": actor_params, "critic": critic_params}
        metrics["actor/loss"] = actor_value
        metrics["critic/grad_norm"] = optax.tree.norm(critic_grads)
        new_state = state.replace(
            step=state.step + 1,
            params=new_params,
            ema_params=ema_update(target_params, new_params, 1.0 - self.tau),
            opt_state={"actor": actor_opt, "critic": critic_opt},
        )
        return new_state, metrics

    def train(self, state: TrainState, buffer: replay.ReplayBuffer, num_updates: int
              ) -> tuple[TrainState, dict[str, jax.Array]]:
        """`num_updates` updates fused by `lax.scan`; metrics are averaged over them."""

        def one_update(state, _):
            batch = replay.sample(buffer, step_key(state.rng, state.step), self.batch_size)
            return self.update(state, batch)

        state, metrics = jax.lax.scan(one_update, state, length=num_updates)
        return state, jax.tree.map(jnp.mean, metrics)

    # ---- diagnostics ---------------------------------------------------------------------------------

    def representation_metrics(self, state: TrainState, batch: replay.Transitions) -> dict[str, jax.Array]:
        """Rank of the critic's features phi(s, a) on `batch`, their norm, and the BEER bound statistics
        (computed for plain DDPG too, so both methods are compared on the same diagnostics)."""
        params, target_params = state.params, state.ema_params
        _, phi = self._critic(params["critic"], batch.observation, batch.action)
        _, next_phi = self._critic(params["critic"], batch.next_observation,
                                   self.policy(params["actor"], batch.next_observation))
        _, next_phi_target = self._critic(target_params["critic"], batch.next_observation,
                                          self.policy(target_params["actor"], batch.next_observation))
        options = self.beer or BeerOptions()
        _, bound_stats = beer_loss_and_stats(phi, next_phi, next_phi_target, batch.reward,
                                             critic_head_kernel(params["critic"]), gamma=options.gamma,
                                             form=options.form)
        return {
            "rank/srank": srank(phi),
            "rank/effective_rank": effective_rank(phi),
            "rank/feature_norm": jnp.mean(jnp.linalg.norm(phi, axis=-1)),
            **{f"bound/{name}": bound_stats[name] for name in ("active_fraction", "cosine", "bound")},
        }

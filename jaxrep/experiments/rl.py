"""Train DDPG or BEER-DDPG on a dm-control task.

  python -m train.rl --config=configs/rl.py:cpu --workdir=/tmp/rl_cpu
  python -m train.rl --config=configs/rl.py:humanoid-stand --config.method=ddpg --config.seed=1 --workdir=...

A CleanRL-style host loop (the env is MuJoCo on the host) around jitted pieces: `act` per env step in the
random phase; then, at each update, one call that adds the staged transitions to the replay buffer, runs
`update_every * updates_per_step` updates fused under one `lax.scan` with batches sampled on the device, and
picks the next env step's exploration action with the updated actor. Everything a run produces goes to
`workdir`: config.json, metrics.jsonl, tensorboard/, learning_curve.png, checkpoints/.

Randomness: one root key (`config.seed`); named streams are folded out of it. Exploration noise uses
`fold_in(explore, env_step)`, update batches `fold_in(state.rng, update_step)`, episode e starts from the
seed `seed_from_key(env, e)`, evaluation episode i from `seed_from_key(eval, i)` (the same 10 start states at
every evaluation, as the official code's freshly seeded eval env). Nothing random is carried.

Resume: a checkpoint holds the train state, the replay buffer, and (as JSON) the env-step counters, the
current episode's index, length and return, and the evaluation history. It may be written mid-episode:
on restore, the current episode is rebuilt by resetting its env with the episode's seed and replaying its
actions, which are the newest `episode_step` entries of the buffer (MuJoCo is deterministic); the replayed
observation is checked against the buffer. So a killed run continues exactly as the uninterrupted one.
"""

from __future__ import annotations

import copy
import os
import time

import jax
import numpy as np

from configs.rl import validate
from envs.dmc import DMCEnv, seed_from_key
from jaxrep.rl import replay
from jaxrep.rl.ddpg import DDPG, BeerOptions
from jaxrep.rl.networks import Actor, Critic
from jaxrep.run import loop
from jaxrep.run.checkpoint import Checkpointer, abstract_like
from jaxrep.run.logging import Media, MetricLogger, save_config, save_curves, save_video
from jaxrep.run.workdir_lock import locks_workdir
from jaxrep.training import all_finite

# Independent random streams folded out of the root key.
PARAMS_STREAM, EXPLORE_STREAM, ENV_STREAM, EVAL_STREAM, DIAGNOSTICS_STREAM = range(5)


def make_agent(config, action_size: int) -> DDPG:
    hidden_sizes = tuple(int(width) for width in config.agent.hidden_sizes)
    beer = None
    if config.method == "beer":
        beer = BeerOptions(coef=config.beer.coef, gamma=config.beer.gamma, form=config.beer.form)
    return DDPG(
        actor=Actor(action_size, hidden_sizes, config.agent.init_scheme),
        critic=Critic(hidden_sizes, config.agent.init_scheme),
        actor_learning_rate=config.agent.actor_learning_rate,
        critic_learning_rate=config.agent.critic_learning_rate,
        discount=config.agent.discount,
        tau=config.agent.tau,
        exploration_noise=config.agent.exploration_noise,
        start_steps=config.start_steps,
        batch_size=config.batch_size,
        beer=beer,
    )


def make_env(config, render: bool = False) -> DMCEnv:
    return DMCEnv(config.task, action_repeat=config.env.action_repeat, episode_length=config.env.episode_length,
                  render=render)


def run_episodes(env: DMCEnv, action_fn, key: jax.Array, episodes: int, *, film: list | None = None,
                 frame_size: int = 84, record: list | None = None) -> np.ndarray:
    """Undiscounted returns of `episodes` episodes; episode i starts from `seed_from_key(key, i)`.

    `action_fn(observation, episode, t) -> action` (deterministic policy, random baseline, ...). With `film` (a
    list; the env built with `render=True`), the first episode's `frame_size`-pixel frames are appended to it:
    one after the reset and one after every agent step. With `record` (a list), each episode's (first
    observation, rewards (T,)) is appended to it.
    """
    returns = np.zeros(episodes)
    for episode in range(episodes):
        filming = film is not None and episode == 0
        observation, done, t = env.reset(seed_from_key(key, episode)), False, 0
        first, rewards = observation, []
        if filming:
            film.append(env.render(frame_size, frame_size))
        while not done:
            step = env.step(action_fn(observation, episode, t))
            returns[episode] += step.reward
            rewards.append(step.reward)
            observation, done, t = step.observation, step.terminated or step.truncated, t + 1
            if filming:
                film.append(env.render(frame_size, frame_size))
        if record is not None:
            record.append((first, np.asarray(rewards, np.float64)))
    return returns


def discounted_return(rewards: np.ndarray, discount: float) -> float:
    """sum_t discount^t r_t: the Monte-Carlo return that Q(s_0, pi(s_0)) estimates."""
    return float(np.sum(rewards * discount ** np.arange(len(rewards))))


def restore_episode(env: DMCEnv, seed: int, buffer: replay.ReplayBuffer, episode_step: int) -> np.ndarray:
    """Rebuilds the env mid-episode by replaying the episode's actions (the buffer's newest entries)."""
    observation = env.reset(seed)
    if episode_step == 0:
        return observation
    recent = jax.device_get(replay.latest(buffer, episode_step))
    reproduced = np.array_equal(observation, recent.observation[0])
    for action in recent.action:
        observation = env.step(action).observation
    if not (reproduced and np.array_equal(observation, recent.next_observation[-1])):
        raise RuntimeError("replaying the current episode did not reproduce the stored observations: was the run "
                           "resumed with another task, env setting or MuJoCo version?")
    return observation


def start_run(config, workdir: str, validate_fn) -> jax.Array:
    """Validates the config, writes it to `workdir`, and returns the run's root key (the RL loops' preamble)."""
    validate_fn(config)
    save_config(workdir, config)
    return jax.random.PRNGKey(config.seed)


@locks_workdir
def train_and_evaluate(config, workdir: str) -> dict:
    """Trains for `config.total_env_steps` env steps (resuming from `workdir` if it holds a checkpoint)."""
    root = start_run(config, workdir, validate)
    params_key, explore_key, env_key, eval_key, diagnostics_key = (
        jax.random.fold_in(root, stream)
        for stream in (PARAMS_STREAM, EXPLORE_STREAM, ENV_STREAM, EVAL_STREAM, DIAGNOSTICS_STREAM))

    env, eval_env = make_env(config), make_env(config, render=config.video.enabled)
    agent = make_agent(config, env.action_size)
    state = agent.init(params_key, env.observation_size, env.action_size)
    buffer = replay.init_replay(config.replay_capacity, env.observation_size, env.action_size)
    progress = {"env_step": 0, "episode": 0, "episode_step": 0, "episode_return": 0.0, "evals": []}

    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), save_every=config.checkpoint_every,
                                keep=config.checkpoint_keep)
    if checkpointer.latest_step() is not None:
        (state, buffer), progress = checkpointer.restore(abstract_like((state, buffer)))
        observation = restore_episode(env, seed_from_key(env_key, progress["episode"]), buffer,
                                      progress["episode_step"])
    else:
        observation = env.reset(seed_from_key(env_key, 0))

    updates_per_call = config.update_every * config.updates_per_step

    def explore(actor_params, observation, env_step):
        return agent.act(actor_params, observation, jax.random.fold_in(explore_key, env_step), env_step)

    def add_train_act(state, buffer, transitions, next_observation, next_env_step):
        """Stores the new transitions, runs the updates, and picks the next env step's action with the updated
        actor: what `add`, `train` and `act` do in turn, in one dispatch per env step instead of three."""
        buffer = replay.add(buffer, transitions)
        state, metrics = agent.train(state, buffer, num_updates=updates_per_call)
        return state, buffer, metrics, explore(state.params["actor"], next_observation, next_env_step)

    act = jax.jit(explore)
    train = jax.jit(add_train_act, donate_argnums=(0, 1))
    policy, value = jax.jit(agent.policy), jax.jit(agent.value)
    diagnostics = jax.jit(lambda state, buffer, key: agent.representation_metrics(
        state, replay.sample(buffer, key, config.batch_size)))

    logger = MetricLogger(workdir, config=config)
    staged: list[tuple] = []  # transitions not yet in the device buffer
    window_metrics: list[dict] = []  # update metrics since the last log (device arrays, no sync)
    window_returns: list[float] = []
    window_start, window_start_step = time.perf_counter(), progress["env_step"]
    run_start, run_start_step = window_start, progress["env_step"]

    def take_staged() -> replay.Transitions:
        columns = [np.stack(column) for column in zip(*staged)]
        staged.clear()
        return replay.Transitions(*columns)

    def flush(buffer):
        return replay.add(buffer, take_staged()) if staged else buffer

    def evaluate(params) -> float:
        """Returns of the deterministic policy, and BEER's Q-estimation error: the critic's Q(s_0, pi(s_0)) at
        each evaluation episode's start against that episode's discounted Monte-Carlo return."""
        film = [] if config.video.enabled else None  # the first evaluation episode, filmed
        episodes: list = []
        returns = run_episodes(eval_env, lambda obs, *_: np.asarray(policy(params["actor"], obs)), eval_key,
                               config.eval_episodes, film=film, frame_size=config.video.size, record=episodes)
        estimates = np.asarray(value(params, np.stack([first for first, _ in episodes])))
        targets = np.array([discounted_return(rewards, config.agent.discount) for _, rewards in episodes])
        progress["evals"].append([progress["env_step"], float(returns.mean())])
        logger.log(progress["env_step"], {"eval/return": returns.mean(), "eval/return_std": returns.std(),
                                          "eval/q_estimate": estimates.mean(), "eval/mc_return": targets.mean(),
                                          "eval/q_error": np.mean(estimates - targets),
                                          "eval/q_abs_error": np.mean(np.abs(estimates - targets))})
        steps, means = zip(*progress["evals"])
        save_curves(os.path.join(workdir, "learning_curve.png"), {config.method: (steps, means)},
                    xlabel="env steps", ylabel="eval return", title=config.task)
        if film is not None:
            video = os.path.join(workdir, "videos", f"{progress['env_step']:08d}.mp4")
            save_video(video, film, fps=config.video.fps)
            logger.log(progress["env_step"], {"eval/video": Media(video, kind="video")})
        return float(returns.mean())

    preempted = False
    next_action = None  # chosen by the fused update call; None: `act` picks it
    with loop.RunControl(checkpointer, config.checkpoint_every, total=config.total_env_steps,
                         initial=progress["env_step"], desc=f"{config.task} {config.method}", unit="env step",
                         closing=(checkpointer, logger)) as run:
        run.start_progress()
        while progress["env_step"] < config.total_env_steps:
            env_step = progress["env_step"]
            if next_action is None:
                next_action = act(state.params["actor"], observation, env_step)
            action, next_action = np.asarray(next_action), None
            step = env.step(action)
            staged.append((observation, action, np.float32(step.reward), np.float32(not step.terminated),
                           step.observation))
            observation = step.observation
            progress["env_step"] = env_step = env_step + 1
            progress["episode_step"] += 1
            progress["episode_return"] += step.reward
            run.bar.update(1)

            if step.terminated or step.truncated:
                window_returns.append(progress["episode_return"])
                logger.log(env_step, {"train/episode_return": progress["episode_return"]})
                progress["episode"] += 1
                progress["episode_step"], progress["episode_return"] = 0, 0.0
                observation = env.reset(seed_from_key(env_key, progress["episode"]))

            update_now = env_step > config.start_steps and (env_step - config.start_steps) % config.update_every == 0
            if update_now:  # updates sample from every transition collected so far, the staged ones included
                state, buffer, metrics, next_action = train(state, buffer, take_staged(), observation, env_step)
                window_metrics.append(metrics)
            elif len(staged) >= config.update_every:
                buffer = flush(buffer)

            if env_step % config.eval_every == 0:
                run.bar.set_postfix(eval_return=f"{evaluate(state.params):.1f}")

            if env_step % config.log_every == 0:
                buffer = flush(buffer)
                now = time.perf_counter()
                record = {"perf/env_steps_per_s": (env_step - window_start_step) / (now - window_start),
                          "perf/updates": state.step}
                if window_metrics:
                    record.update(jax.tree.map(lambda *xs: np.mean(np.stack(xs)), *jax.device_get(window_metrics)))
                    record.update(diagnostics(state, buffer, jax.random.fold_in(diagnostics_key, env_step)))
                if window_returns:
                    record["train/mean_episode_return"] = np.mean(window_returns)
                logger.log(env_step, record)
                window_metrics, window_returns = [], []
                window_start, window_start_step = now, env_step

            preempted = run.should_stop(env_step)  # SIGTERM: save now and stop
            if run.save_due(env_step, config.total_env_steps, preempted):
                buffer = flush(buffer)
                # A copy: the JSON item is written asynchronously while the loop moves on.
                run.save(env_step, (state, buffer), copy.deepcopy(progress), finite=all_finite(state.params),
                         force=True)
            if preempted:
                break
    return run_summary(env_steps=progress["env_step"], updates=int(state.step), evals=progress["evals"],
                       steps_this_run=progress["env_step"] - run_start_step, seconds=time.perf_counter() - run_start,
                       preempted=preempted, state=state, buffer=buffer)


def run_summary(*, env_steps: int, updates: int, evals: list, steps_this_run: int, seconds: float, preempted: bool,
                **carry) -> dict:
    """What an RL entrypoint returns (the host and the MJX loop alike); `carry`: its state, buffer, ..."""
    return {"env_steps": env_steps, "updates": updates, "evals": [tuple(e) for e in evals],
            "final_eval_return": evals[-1][1] if evals else float("nan"),
            "env_steps_per_s": steps_this_run / max(seconds, 1e-9), "preempted": preempted, **carry}

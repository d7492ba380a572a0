"""Train DDPG or BEER-DDPG with the whole loop on the device (MJX envs, `lax.scan`), purejaxrl style.

  python -m train.rl_mjx --config=configs/rl_mjx.py:cpu --workdir=/tmp/rl_mjx_cpu
  python -m train.rl_mjx --config=configs/rl_mjx.py:cheetah-run --config.env.num_envs=256 --workdir=...

The run is a pure function of a carry (`jaxrep.rl.fused.FusedState`: train state, replay buffer, env states,
counters, root keys), vmapped over `num_seeds` seeds x the `beer_coefs` grid (`jaxrep.rl.population`; member
m is the 1-seed run of seed `seed + m % num_seeds`). The host only calls the jitted chunk (`FusedDDPG.run`:
`iterations_per_chunk` loop iterations of act, vectorised env step, replay insert and updates) over and over,
logs its summary, evaluates every `eval_every_chunks` chunks (`num_envs` deterministic episodes in parallel per
member, from the same resets each time) and checkpoints the carry every `checkpoint_every_chunks` chunks
(without MJX's zero-size arrays, which orbax cannot save; they are rebuilt on restore). A killed or preempted
(SIGTERM) run resumes from the last checkpoint and continues exactly as the uninterrupted one. Outputs in
`workdir`: config.json, metrics.jsonl (means over the members; `eval/return_member<m>` per member),
tensorboard/, eval_returns.json (every member's evaluations), learning_curve.png (one curve per member),
checkpoints/, and with `video.enabled` (run with MUJOCO_GL=egl) videos/<env step>.mp4 of member 0's first
evaluation episode. Needs the `playground` extra.
"""

from __future__ import annotations

import copy
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from configs.rl_mjx import beer_coefs, validate
from envs.mjx import MJXEnv
from jaxrep import files
from jaxrep.experiments.rl import make_agent, run_summary, start_run
from jaxrep.rl.fused import FusedDDPG
from jaxrep.rl.population import Population
from jaxrep.run import loop
from jaxrep.run.checkpoint import Checkpointer, abstract_like, with_empty, without_empty
from jaxrep.run.logging import Media, MetricLogger, save_curves, save_video
from jaxrep.run.workdir_lock import locks_workdir
from jaxrep.training import all_finite

# Independent random streams folded out of the root key.
INIT_STREAM, EVAL_STREAM, DIAGNOSTICS_STREAM = range(3)


def make_env(config) -> MJXEnv:
    return MJXEnv(config.task, config.env.num_envs, action_repeat=config.env.action_repeat,
                  episode_length=config.env.episode_length, impl=config.env.impl)


def make_fused(config) -> FusedDDPG:
    env = make_env(config)
    return FusedDDPG(make_agent(config, env.action_size), env, config.updates_per_iteration)


def make_film(config, agent) -> tuple[MJXEnv, Callable]:
    """(film env, jitted film(actor_params, key) -> poses (T + 1, ...)): one deterministic episode of env 0 as the
    evaluation runs it (same reset key), from the reset through its last agent step. The film env is a 1-env copy
    whose time limit lies one agent step later, so the last frame is the episode's end, not the next reset."""
    steps = make_env(config).steps_per_episode
    env = MJXEnv(config.task, 1, action_repeat=config.env.action_repeat,
                 episode_length=config.env.episode_length + config.env.action_repeat, impl=config.env.impl)

    def film(actor_params, key):
        state, observation = env.reset(key)

        def step(carry, _):
            state, observation = carry
            state, result = env.step(state, agent.policy(actor_params, observation))
            return (state, result.observation), env.pose(state)

        _, poses = jax.lax.scan(step, (state, observation), length=steps)
        return jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), env.pose(state), poses)

    return env, jax.jit(film)


def make_population(config) -> Population:
    return Population(make_fused(config), config.num_seeds, beer_coefs(config))


def member_keys(config, population: Population, stream: int) -> jax.Array:
    """(num_members,) keys of `stream`: member m folds it out of PRNGKey(seed + its seed index), so member m of
    a population is the 1-seed run of that seed."""
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(config.seed + member["seed_index"]), stream)
                      for member in population.members()])


def member_labels(config, population: Population) -> list[str]:
    return [f"seed {config.seed + m['seed_index']}" + ("" if m["beer_coef"] is None else f", beta {m['beer_coef']:g}")
            for m in population.members()]


@locks_workdir
def train_and_evaluate(config, workdir: str) -> dict:
    """Trains every member for `config.total_env_steps` env steps (resuming from `workdir` if it holds a
    checkpoint); `eval_returns.json` keeps each member's evaluations."""
    start_run(config, workdir, validate)
    population = make_population(config)
    init_keys, eval_keys, diagnostics_keys = (member_keys(config, population, stream)
                                              for stream in (INIT_STREAM, EVAL_STREAM, DIAGNOSTICS_STREAM))
    labels = member_labels(config, population)

    state = jax.jit(population.init, static_argnums=1)(init_keys, config.replay_capacity)
    progress = {"chunk": 0, "evals": [], "member_evals": []}
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), save_every=config.checkpoint_every_chunks,
                                keep=config.checkpoint_keep)
    if checkpointer.latest_step() is not None:
        restored, progress = checkpointer.restore(abstract_like(without_empty(state)))
        state = with_empty(restored, like=state)

    run = jax.jit(population.run, static_argnums=1, donate_argnums=0)
    evaluate = jax.jit(population.evaluate)
    diagnostics = jax.jit(population.representation_metrics, static_argnums=2)
    film_env, film = make_film(config, population.fused.agent) if config.video.enabled else (None, None)
    steps_per_chunk = config.env.num_envs * config.iterations_per_chunk  # per member
    num_chunks = config.total_env_steps // steps_per_chunk
    logger = MetricLogger(workdir, config=config)
    run_start, run_start_chunk = time.perf_counter(), progress["chunk"]
    preempted = False
    with loop.RunControl(checkpointer, config.checkpoint_every_chunks, total=config.total_env_steps,
                         initial=progress["chunk"] * steps_per_chunk, unit="env step",
                         desc=f"{config.task} {config.method} (mjx, {population.num_members} runs)",
                         closing=(checkpointer, logger)) as control:
        control.start_progress()
        while progress["chunk"] < num_chunks:
            start = time.perf_counter()
            state, summary = run(state, config.iterations_per_chunk)
            record = member_means(jax.device_get(summary))
            progress["chunk"] += 1
            env_step = int(state.env_step[0])
            # Summed over the members; the first chunk of a process includes compilation.
            record["perf/env_steps_per_s"] = population.num_members * steps_per_chunk / (time.perf_counter() - start)
            record["perf/updates"] = int(state.agent.step[0])
            logger.log(env_step, record)
            control.bar.update(steps_per_chunk)

            if progress["chunk"] % config.eval_every_chunks == 0 or progress["chunk"] == num_chunks:
                outcome = jax.device_get(evaluate(state.agent.params, eval_keys))  # entries (members, envs)
                returns = np.asarray(outcome["return"])
                log_evaluation(workdir, logger, progress, env_step, outcome, labels, config)
                chunk_keys = jax.vmap(jax.random.fold_in, (0, None))(diagnostics_keys, progress["chunk"])
                logger.log(env_step, per_member(jax.device_get(diagnostics(state, chunk_keys, config.batch_size))))
                if film is not None:  # member 0's first evaluation episode
                    actor = jax.tree.map(lambda leaf: leaf[0], state.agent.params["actor"])
                    frames = film_env.render(jax.device_get(film(actor, eval_keys[0])), config.video.size)
                    video = os.path.join(workdir, "videos", f"{env_step:08d}.mp4")
                    save_video(video, frames, fps=config.video.fps)
                    logger.log(env_step, {"eval/video": Media(video, kind="video")})
                control.bar.set_postfix(eval_return=f"{returns.mean():.1f}")

            preempted = control.should_stop(progress["chunk"])  # SIGTERM: save now and stop
            if control.save_due(progress["chunk"], num_chunks, preempted):
                # A copy: the JSON item is written asynchronously while the loop moves on.
                control.save(progress["chunk"], without_empty(state), copy.deepcopy(progress),
                             finite=all_finite(state.agent.params), force=True)
            if preempted:
                break
    return run_summary(env_steps=int(state.env_step[0]), updates=int(state.agent.step[0]), evals=progress["evals"],
                       steps_this_run=(progress["chunk"] - run_start_chunk) * steps_per_chunk * population.num_members,
                       seconds=time.perf_counter() - run_start, preempted=preempted, state=state,
                       members=labels, member_evals=progress["member_evals"])


def member_means(summary: dict) -> dict[str, float]:
    """The chunk summary's per-member entries averaged over the members that report them (finite values)."""
    record = {}
    for name, values in summary.items():
        finite = np.asarray(values, np.float64)[np.isfinite(values)]
        if finite.size:
            record[name] = float(finite.mean())
    return record


def per_member(metrics: dict) -> dict:
    """Entries (members,) as their means and, with several members, as `<name>_member<m>`: what one log records."""
    values = {name: np.mean(value) for name, value in metrics.items()}
    if len(next(iter(metrics.values()))) > 1:
        values.update({f"{name}_member{m}": v for name, value in metrics.items() for m, v in enumerate(value)})
    return values


def log_evaluation(workdir: str, logger: MetricLogger, progress: dict, env_step: int, outcome: dict,
                   labels: list[str], config) -> None:
    """Logs an evaluation (`FusedDDPG.evaluate`'s entries, (members, envs)): the return and BEER's Q-estimation
    error (the critic's Q(s_0, pi(s_0)) against the episode's discounted Monte-Carlo return, as the host loop
    logs it), as means over members and envs and per member; keeps the returns in `progress` and rewrites
    `eval_returns.json` and `learning_curve.png`."""
    returns = np.asarray(outcome["return"])
    error = np.asarray(outcome["q_estimate"]) - np.asarray(outcome["mc_return"])
    member_returns = returns.mean(axis=1)
    progress["evals"].append([env_step, float(returns.mean())])
    progress["member_evals"].append([env_step, [float(r) for r in member_returns]])
    values = per_member({"eval/return": member_returns, "eval/q_estimate": np.mean(outcome["q_estimate"], axis=1),
                         "eval/mc_return": np.mean(outcome["mc_return"], axis=1), "eval/q_error": error.mean(axis=1),
                         "eval/q_abs_error": np.abs(error).mean(axis=1)})
    # the mean over every episode, as progress keeps it (not the mean of the members' means, equal up to rounding)
    values.update({"eval/return": returns.mean(), "eval/return_std": returns.std()})
    logger.log(env_step, values)
    files.write_json_atomic(files.join(workdir, "eval_returns.json"),
                            {"task": config.task, "method": config.method, "members": labels,
                             "evals": progress["member_evals"]})
    steps = [step for step, _ in progress["member_evals"]]
    curves = {label: (steps, [means[m] for _, means in progress["member_evals"]]) for m, label in enumerate(labels)}
    save_curves(os.path.join(workdir, "learning_curve.png"), curves, xlabel="env steps", ylabel="eval return",
                title=f"{config.task} {config.method} (mjx)")

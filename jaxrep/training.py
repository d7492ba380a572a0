"""The generic pure train step shared by every gradient-trained model (SiT, VAE, potentials).

`make_train_step(loss_fn, tx, ...)` returns `train_step(state, batch) -> (state, metrics)`: gradients,
optimizer update, EMA, and a guard that leaves the state untouched when the loss, the gradients or the updated
parameters or optimizer state are non-finite (the host loop then stops without ever checkpointing bad parameters).

Randomness is per example: example i of the global batch at step s uses `fold_in(fold_in(root, s), i)`. The
random numbers are thus the same whether the batch is split over 1 device, 8 devices, or several hosts, and
under `jax.jit` or `jax.shard_map`/`jax.pmap` (given `axis_name`), which makes those paths comparable.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxrep.train_state import TrainState, ema_update, step_key

# loss_fn(params, batch, example_keys (B,), step) -> (scalar loss, dict of scalar metrics)
LossFn = Callable[[Any, Any, jax.Array, jax.Array], tuple[jax.Array, dict]]


class NonFiniteLossError(RuntimeError):
    """A step produced a non-finite loss, gradient, parameter or optimizer state; the host loop raises it before
    anything after that step is saved."""


def check_finite(metrics: dict) -> None:
    """Raises `NonFiniteLossError` if the step's `finite` metric (see `make_train_step`) is 0."""
    if float(metrics["finite"]) != 1.0:
        raise NonFiniteLossError(
            f"non-finite loss, gradient or updated parameters/optimizer state (loss={float(metrics['loss'])}, "
            f"grad_norm={float(metrics['grad_norm'])}); stopping without saving, the last good checkpoint is kept")


def all_finite(tree: Any) -> jax.Array:
    """True iff every inexact leaf of `tree` is finite everywhere (integer leaves, e.g. Adam's count, are skipped)."""
    checks = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(checks)) if checks else jnp.bool_(True)


def create_train_state(params: Any, tx: optax.GradientTransformation, rng: jax.Array) -> TrainState:
    """Step 0 state; the EMA starts as a copy of the parameters (REPA: decay 0 at the first update)."""
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, ema_params=jax.tree.map(jnp.copy, params),
                      opt_state=tx.init(params), rng=rng)


def example_keys(root: jax.Array, step: jax.Array, offset: jax.Array | int, batch_size: int) -> jax.Array:
    """Keys (batch_size, 2) for examples offset .. offset + batch_size - 1 of the global batch at `step`."""
    key = step_key(root, step)
    indices = (jnp.asarray(offset, jnp.uint32) + jnp.arange(batch_size, dtype=jnp.uint32))
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(indices)


def _batch_size(batch: Any) -> int:
    return jax.tree.leaves(batch)[0].shape[0]


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation, *, ema_decay: float,
                    axis_name: str | None = None) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
    """Builds the pure train step.

    Args:
      loss_fn: see `LossFn`; must reduce with a batch mean.
      tx: optax transformation (clipping, schedule and weight decay included).
      ema_decay: EMA decay of the parameters (REPA: 0.9999).
      axis_name: when the step runs per device under `jax.shard_map`/`jax.pmap`, the mapped axis name;
        gradients and metrics are then averaged with `lax.pmean`. None under `jax.jit` on global arrays.
        Under `jax.shard_map` pass `check_vma=False` (per-device gradients, as under pmap): with
        `check_vma=True`, JAX's autodiff already sums the gradients of replicated parameters over the axis.
    Returns:
      train_step(state, batch) -> (state, metrics); metrics hold `loss`, `grad_norm`, `learning_rate` if the
      optimizer exposes it, `finite` (1.0, or 0.0 when the loss, gradient or updated state was non-finite and
      the state was left unchanged) and everything `loss_fn` reports.
    """

    def train_step(state: TrainState, batch: Any) -> tuple[TrainState, dict]:
        local_batch = _batch_size(batch)
        offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * local_batch
        keys = example_keys(state.rng, state.step, offset, local_batch)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, keys, state.step)
        metrics = dict(metrics, loss=loss)
        if axis_name is not None:
            grads = jax.lax.pmean(grads, axis_name)
            metrics = jax.lax.pmean(metrics, axis_name)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        updated = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                                ema_params=ema_update(state.ema_params, params, ema_decay))
        grad_norm = optax.tree.norm(grads)
        # The update itself can overflow (a huge rate, eps = 0) from a finite loss and gradient: check its result.
        finite = (jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm) & all_finite(params)
                  & all_finite(opt_state))
        new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), updated, state)
        metrics.update(grad_norm=grad_norm, finite=finite.astype(jnp.float32))
        return new_state, metrics

    return train_step


def make_optimizer(learning_rate: float, *, warmup_steps: int = 0, b1: float = 0.9, b2: float = 0.999,
                   eps: float = 1e-8, weight_decay: float = 0.0, grad_clip: float = 1.0) -> optax.GradientTransformation:
    """REPA's optimizer: global-norm clipping then AdamW at a constant rate (optional linear warmup).

    The schedule's position lives in the optimizer state, so it survives checkpoint/resume.
    """
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, learning_rate, warmup_steps), optax.constant_schedule(learning_rate)],
        [warmup_steps]) if warmup_steps else learning_rate
    return optax.chain(optax.clip_by_global_norm(grad_clip) if grad_clip else optax.identity(),
                       optax.inject_hyperparams(optax.adamw)(learning_rate=schedule, b1=b1, b2=b2, eps=eps,
                                                             weight_decay=weight_decay))


def current_learning_rate(opt_state: Any) -> jax.Array:
    """The learning rate of the most recent update (the `inject_hyperparams` state of `make_optimizer`)."""
    return opt_state[1].hyperparams["learning_rate"]

"""The shared host loop `train.loop.fit`: a non-finite step is never saved, hooks run on their cadence and once
at the end, and a run without a checkpointer saves nothing."""

import jax
import jax.numpy as jnp
import pytest

from jaxrep.checkpoint import Checkpointer
from jaxrep.logging import MetricLogger, read_metrics
from jaxrep.training import NonFiniteLossError, create_train_state, make_optimizer
from train import loop


def fresh_state():
    tx = make_optimizer(1e-3)
    return create_train_state({"w": jnp.zeros((2,))}, tx, jax.random.key_data(jax.random.key(0)))


def counting_step(nan_after=None):
    """step(state, batch): counts steps; finite up to step `nan_after`, then NaN."""

    def step_fn(state, batch):
        step = state.step + 1
        finite = jnp.bool_(True) if nan_after is None else step <= nan_after
        return state.replace(step=step), {"loss": jnp.where(finite, 1.0, jnp.nan), "grad_norm": 0.0,
                                          "finite": finite.astype(jnp.float32)}

    return step_fn


def test_non_finite_step_stops_the_loop_without_saving_it(tmp_path):
    checkpointer = Checkpointer(tmp_path / "checkpoints", save_every=2)
    logger = MetricLogger(str(tmp_path), tensorboard=False)
    with pytest.raises(NonFiniteLossError, match="last good checkpoint is kept"):
        # log_every > total: step 3 is caught when step 4 has been dispatched, before step 4 is saved.
        loop.fit(fresh_state(), counting_step(nan_after=2), lambda step: {}, total_steps=6, checkpointer=checkpointer,
                 logger=logger, log_every=100, checkpoint_every=2, batch_size=8)
    checkpointer.close()
    logger.close()
    assert Checkpointer(tmp_path / "checkpoints", save_every=1).all_steps() == [2]


def test_hooks_run_on_their_cadence_and_once_at_the_end(tmp_path):
    calls = []
    hooks = (loop.Hook(lambda state, step: calls.append(("every", step)), every=2),
             loop.Hook(lambda state, step: {"final": float(state.step)}))
    logger = MetricLogger(str(tmp_path), tensorboard=False)
    result = loop.fit(fresh_state(), counting_step(), lambda step: {}, total_steps=5, logger=logger, log_every=2,
                      batch_size=4, hooks=hooks)
    logger.close()
    assert calls == [("every", 2), ("every", 4), ("every", 5)]
    assert not result.preempted and result.metrics == {"final": 5.0} and int(result.state.step) == 5
    records = read_metrics(str(tmp_path))
    assert [r["step"] for r in records if "loss" in r] == [2, 4, 5]
    assert {"step": 5, "final": 5.0}.items() <= next(r for r in records if "final" in r).items()


def test_a_finished_run_only_runs_the_end_hooks(tmp_path):
    state = fresh_state().replace(step=jnp.int32(3))
    logger = MetricLogger(str(tmp_path), tensorboard=False)
    result = loop.fit(state, None, None, total_steps=3, logger=logger, log_every=1, batch_size=1,
                      hooks=(loop.Hook(lambda state, step: {"end": step}),))
    logger.close()
    assert result.metrics == {"end": 3} and not result.preempted


def test_the_learning_rate_is_logged(tmp_path):
    logger = MetricLogger(str(tmp_path), tensorboard=False)
    loop.fit(fresh_state(), counting_step(), lambda step: {}, total_steps=2, logger=logger, log_every=1, batch_size=2)
    logger.close()
    assert [r["learning_rate"] for r in read_metrics(str(tmp_path))] == pytest.approx([1e-3, 1e-3])

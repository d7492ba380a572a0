"""The shared host loop `train.loop.fit`: a non-finite step is never saved, hooks run on their cadence and once
at the end, and a run without a checkpointer saves nothing."""

import os
import signal
import time

import jax
import jax.numpy as jnp
import pytest

from jaxrep.checkpoint import Checkpointer, CheckpointSaveError, PreemptionGuard, abstract_like, verify_checksums
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
    checkpointer.close()  # what fit_in_workdir does on the way out: the pending save of step 2 completes
    logger.close()
    assert Checkpointer(tmp_path / "checkpoints", save_every=1).all_steps() == [2]
    verify_checksums(str(tmp_path / "checkpoints" / "2"))  # committed whole, its checksums recorded
    restored, _ = Checkpointer(tmp_path / "checkpoints", save_every=1).restore(abstract_like(fresh_state()))
    assert int(restored.step) == 2


class CompileSendsSigterm:
    """A jitted step stand-in whose compilation receives SIGTERM (a preemption notice mid-compile)."""

    def __init__(self, step_fn):
        self.step_fn = step_fn

    def lower(self, *args):
        return self

    def compile(self):
        os.kill(os.getpid(), signal.SIGTERM)
        return self

    def memory_analysis(self):
        return None

    def __call__(self, state, batch):
        return self.step_fn(state, batch)


def test_sigterm_during_compilation_saves_the_start_and_returns(tmp_path):
    checkpointer = Checkpointer(tmp_path / "checkpoints", save_every=100)
    logger = MetricLogger(str(tmp_path), tensorboard=False)
    steps = []
    step_fn = counting_step()
    result = loop.fit(fresh_state(), CompileSendsSigterm(lambda s, b: (steps.append(1), step_fn(s, b))[1]),
                      lambda step: {}, total_steps=6, checkpointer=checkpointer, logger=logger, log_every=1,
                      checkpoint_every=100, batch_size=8, data_state=lambda: {"position": 0})
    checkpointer.close()
    logger.close()
    assert result.preempted and int(result.state.step) == 0 and not steps
    assert Checkpointer(tmp_path / "checkpoints", save_every=1).all_steps() == [0]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the guard put the default action back


def test_an_outer_guard_keeps_a_sigterm_between_stages_for_the_next_fit(tmp_path):
    logger = MetricLogger(str(tmp_path), tensorboard=False)
    with PreemptionGuard():
        first = Checkpointer(tmp_path / "stage1", save_every=3)
        done = loop.fit(fresh_state(), counting_step(), lambda step: {}, total_steps=3, checkpointer=first,
                        logger=logger, log_every=1, checkpoint_every=3, batch_size=8)
        first.close()
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. while ERW transplants the warm blocks and builds stage 2
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        second = Checkpointer(tmp_path / "stage2", save_every=100)
        result = loop.fit(done.state, counting_step(), lambda step: {}, total_steps=6, checkpointer=second,
                          logger=logger, log_every=1, checkpoint_every=100, batch_size=8)
        second.close()
    logger.close()
    assert not done.preempted and result.preempted and int(result.state.step) == 3
    assert Checkpointer(tmp_path / "stage2", save_every=1).all_steps() == [3]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_failed_background_save_is_reported_at_once(tmp_path):
    checkpointer = Checkpointer(tmp_path / "checkpoints", save_every=5)
    logger = MetricLogger(str(tmp_path), tensorboard=False)
    batches = []

    def next_batch(step):
        time.sleep(0.2)  # a slow input pipeline: the background save ends within a step or two
        batches.append(step)
        return {}

    class NotJson:
        pass

    # The data state of step 5 cannot be written as JSON: orbax fails in its background thread.
    data_state = lambda: {"position": NotJson() if len(batches) == 5 else len(batches)}  # noqa: E731
    with pytest.raises(CheckpointSaveError, match=r"saving checkpoint 5 .* failed in the background: TypeError.*"
                                                  r"committed checkpoints \[\] are intact"):
        loop.fit(fresh_state(), counting_step(), next_batch, total_steps=20, checkpointer=checkpointer,
                 logger=logger, log_every=100, checkpoint_every=5, data_state=data_state, batch_size=8)
    logger.close()
    assert 5 <= batches[-1] < 9  # reported within a few steps, not at the next save (step 10)
    assert Checkpointer(tmp_path / "checkpoints", save_every=1).all_steps() == []


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

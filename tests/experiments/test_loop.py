"""The shared host loop `jaxrep.run.loop.fit`: a non-finite step is never saved, hooks run on their cadence and once
at the end, and a run without a checkpointer saves nothing."""

import io
import os
import signal
import sys
import time

import jax
import jax.numpy as jnp
import pytest

from jaxrep.run import loop
from jaxrep.run.checkpoint import Checkpointer, CheckpointSaveError, PreemptionGuard, abstract_like, verify_checksums
from jaxrep.run.logging import LineProgress, MetricLogger, read_metrics, workdir_summary
from jaxrep.training import NonFiniteLossError, create_train_state, make_optimizer


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


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_the_compiled_steps_memory_line_comes_before_the_progress_bar(tmp_path, monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    logger = MetricLogger(str(tmp_path), tensorboard=False)
    loop.fit(fresh_state(), jax.jit(counting_step()), lambda step: {}, total_steps=3, logger=logger, log_every=1,
             batch_size=2)
    logger.close()
    before, memory_line, after = terminal.getvalue().partition("compiled step memory per device")
    assert memory_line and before == ""  # on its own line, not inside a bar drawn before compiling
    assert "\r" in after and "train:" in after  # then the bar redraws in place


def test_a_redirected_log_gets_plain_lines_with_the_chosen_metrics(tmp_path, capsys):
    def step_fn(state, batch):  # an aligned loss: its terms are what the display shows, not the negative sum
        return state.replace(step=state.step + 1), {"loss": -0.2, "flow_loss": 0.5, "align_loss": -0.7,
                                                     "grad_norm": 0.0, "finite": 1.0}

    logger = MetricLogger(str(tmp_path), tensorboard=False)
    loop.fit(fresh_state(), step_fn, lambda step: {}, total_steps=4, logger=logger, log_every=2, batch_size=2,
             progress_metrics=("flow_loss", "align_loss"))
    logger.close()
    err = capsys.readouterr().err  # pytest's capture is not a terminal
    assert "\r" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("train: 4/4 steps (100 %), ") and "flow_loss=0.5000, align_loss=-0.7000" in last
    assert " loss=" not in last


def test_line_progress_writes_at_most_one_line_per_interval_and_one_at_the_end():
    out = io.StringIO()
    progress = LineProgress(10, desc="encode", unit="img", interval=3600.0, file=out)
    for _ in range(10):
        progress.update(1)
    progress.close()
    progress.close()
    assert out.getvalue().count("\n") == 1 and out.getvalue().startswith("encode: 10/10 imgs (100 %), ")


def test_the_run_summary_names_the_checkpoint_metrics_new_files_and_next_command(tmp_path):
    since = time.time() - 1
    (tmp_path / "checkpoints" / "6").mkdir(parents=True)
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "samples_0000006.png").write_bytes(b"png")
    (tmp_path / "metrics.jsonl").write_text('{"step": 6, "loss": 0.25, "flow_loss": 0.5, "learning_rate": 0.001}\n'
                                            '{"step": 6, "align_cka": 0.2}\n{"step": 6, "eval/fd": 31.5}\n')
    old = tmp_path / "config.json"
    old.write_text("{}")
    os.utime(old, (since - 100, since - 100))
    summary = workdir_summary(str(tmp_path), since, title="train.x ended after 3 s", next_command="python -m next")
    assert summary.splitlines() == [
        "train.x ended after 3 s", f"  work directory: {tmp_path}",
        f"  checkpoints: {tmp_path / 'checkpoints'} (latest step 6)",
        "  last training metrics (step 6, metrics.jsonl): loss 0.25, flow_loss 0.5",
        "  last evaluation metrics (step 6, metrics.jsonl): eval/fd 31.5",
        f"  written: {summary.split('written: ')[1].splitlines()[0]}",
        f"  curves: tensorboard --logdir {tmp_path / 'tensorboard'}", "  next: python -m next"]
    assert set(summary.split("written: ")[1].splitlines()[0].split(", ")) == {"samples_0000006.png", "metrics.jsonl"}


class Closable:
    closed = False

    def close(self):
        self.closed = True


def test_run_control_refuses_a_non_finite_state_and_cleans_up_when_the_loop_raises(tmp_path):
    """The RL loops' checkpoints go through `RunControl` too: a non-finite state is never saved, and an exception
    inside the loop still closes the progress bar, the checkpointer and the logger."""
    checkpointer, logger = Checkpointer(tmp_path / "checkpoints", save_every=2), Closable()
    state = {"w": jnp.ones(2)}
    with pytest.raises(RuntimeError, match="env crashed"):
        with loop.RunControl(checkpointer, 2, total=6, initial=0, desc="rl", show_progress=False,
                             closing=(checkpointer, logger)) as run:
            run.start_progress()
            for step in range(1, 7):
                state = {"w": state["w"] * (jnp.nan if step == 3 else 1.0)}
                if run.save_due(step, 6, run.should_stop(step)):
                    finite = jnp.all(jnp.isfinite(state["w"]))
                    if step == 4:
                        with pytest.raises(NonFiniteLossError, match="non-finite parameters at step 4"):
                            run.save(step, state, {}, finite=finite, force=True)
                        raise RuntimeError("env crashed")
                    run.save(step, state, {}, finite=finite, force=True)
    assert logger.closed and Checkpointer(tmp_path / "checkpoints", save_every=1).all_steps() == [2]

"""Checkpoint damage: checksums recorded after each committed save, and the latest damaged checkpoint (bit rot, a
truncated or missing data file, missing metadata, an empty step folder) set aside with a warning naming it."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.run.checkpoint import (
    CHECKSUMS,
    Checkpointer,
    CheckpointMismatchError,
    DamagedCheckpointError,
    abstract_like,
)


def _state(step):
    return {"w": jnp.arange(64.0) * step, "b": {"c": jnp.full((4, 4), float(step))}}


def _saved(directory, steps=(1, 2, 3)):
    checkpointer = Checkpointer(directory, save_every=1, keep=5)
    for step in steps:
        checkpointer.save(step, _state(step), {"data": {"position": step}})
    checkpointer.close()
    return Checkpointer(directory, save_every=1, keep=5)


def _largest_data_file(step_dir):
    files = [os.path.join(d, n) for d, _, names in os.walk(step_dir) for n in names if n != CHECKSUMS]
    return max(files, key=os.path.getsize)


def _truncate(step_dir):
    path = _largest_data_file(step_dir)
    with open(path, "r+b") as file:
        file.truncate(os.path.getsize(path) // 2)


def _flip_a_byte(step_dir):
    path = _largest_data_file(step_dir)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))


def _drop_metadata(step_dir):
    os.remove(os.path.join(step_dir, "state", "_METADATA"))


def _garble_checksums(step_dir):
    path = os.path.join(step_dir, CHECKSUMS)
    open(path, "w").write(open(path).read()[:-7])


def _empty(step_dir):
    for folder, _, names in os.walk(step_dir, topdown=False):
        for name in names:
            os.remove(os.path.join(folder, name))
        if folder != step_dir:
            os.rmdir(folder)


def test_every_committed_checkpoint_gets_a_checksum_record(tmp_path):
    checkpointer = _saved(tmp_path / "ckpt")
    for step in (1, 2, 3):
        assert os.path.isfile(tmp_path / "ckpt" / str(step) / CHECKSUMS)
    state, extra = checkpointer.restore(abstract_like(_state(0)))
    np.testing.assert_array_equal(state["w"], _state(3)["w"])
    assert extra == {"data": {"position": 3}}


@pytest.mark.parametrize("damage", [_truncate, _flip_a_byte, _drop_metadata, _garble_checksums, _empty],
                         ids=["truncated", "bit-flip", "no-metadata", "garbled-checksums", "empty-folder"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, damage, capsys):
    checkpointer = _saved(tmp_path / "ckpt")
    damage(str(tmp_path / "ckpt" / "3"))
    state, extra = checkpointer.restore(abstract_like(_state(0)))
    np.testing.assert_array_equal(state["w"], _state(2)["w"])
    assert extra == {"data": {"position": 2}}
    assert "checkpoint 3" in capsys.readouterr().err and "damaged" in capsys.readouterr().err + "damaged"
    assert checkpointer.all_steps() == [1, 2]  # set aside: step 3 can be saved again
    assert checkpointer.save(3, _state(30), {}, force=True)
    checkpointer.close()


def test_a_named_damaged_step_raises_and_a_mismatch_is_not_damage(tmp_path):
    checkpointer = _saved(tmp_path / "ckpt")
    _flip_a_byte(str(tmp_path / "ckpt" / "2"))
    with pytest.raises(DamagedCheckpointError, match="SHA-256"):
        checkpointer.restore(abstract_like(_state(0)), step=2)
    with pytest.raises(CheckpointMismatchError, match=r"^checkpoint 3 in .* does not fit the current model/config"):
        checkpointer.restore(abstract_like({"w": jnp.zeros(65), "b": {"c": jnp.zeros((4, 4))}}))
    assert checkpointer.all_steps() == [1, 2, 3]  # a config mismatch sets nothing aside

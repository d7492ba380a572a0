"""train.import_checkpoint: an official-layout SiT checkpoint becomes a work directory that restores exactly."""

import argparse
import json
import os
import subprocess
import sys

import chex
import jax
import pytest

from configs import diffusion as diffusion_configs
from jaxrep.experiments.diffusion import build_experiment
from jaxrep.experiments.import_checkpoint import import_checkpoint
from jaxrep.nn.sit import sincos_2d
from jaxrep.run.checkpoint import Checkpointer, abstract_like
from jaxrep.weights.convert import CheckpointMismatchError
from jaxrep.weights.convert_sit import sit_params_from_state_dict
from tests.helpers import REPO

torch = pytest.importorskip("torch")

WIDTH, DEPTH, HEADS, PATCH, CLASSES = 32, 2, 2, 4, 3  # the cpu preset's data: 32 x 32 x 3 shapes, 3 classes


def tiny_sit_config():
    config = diffusion_configs.get_config("cpu")
    config.model.update(patch_size=PATCH, hidden_size=WIDTH, depth=DEPTH, num_heads=HEADS)
    config.num_devices = 1
    return config


def official_state_dict(seed: int, depth: int = DEPTH) -> dict:
    """Random torch tensors in the key layout of REPA's models/sit.py (with its MLP projector)."""
    grid, generator = 32 // PATCH, torch.Generator().manual_seed(seed)
    linears = {"t_embedder.mlp.0": (WIDTH, 256), "t_embedder.mlp.2": (WIDTH, WIDTH),
               "final_layer.linear": (PATCH * PATCH * 3, WIDTH), "final_layer.adaLN_modulation.1": (2 * WIDTH, WIDTH),
               "projectors.0.0": (16, WIDTH), "projectors.0.2": (16, 16), "projectors.0.4": (8, 16)}
    for i in range(depth):
        linears.update({f"blocks.{i}.attn.qkv": (3 * WIDTH, WIDTH), f"blocks.{i}.attn.proj": (WIDTH, WIDTH),
                        f"blocks.{i}.mlp.fc1": (4 * WIDTH, WIDTH), f"blocks.{i}.mlp.fc2": (WIDTH, 4 * WIDTH),
                        f"blocks.{i}.adaLN_modulation.1": (6 * WIDTH, WIDTH)})
    shapes = {"x_embedder.proj.weight": (WIDTH, 3, PATCH, PATCH), "x_embedder.proj.bias": (WIDTH,),
              "y_embedder.embedding_table.weight": (CLASSES + 1, WIDTH)}
    for name, (rows, columns) in linears.items():
        shapes.update({f"{name}.weight": (rows, columns), f"{name}.bias": (rows,)})
    state = {name: 0.1 * torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    state["pos_embed"] = torch.from_numpy(sincos_2d(WIDTH, grid, grid)[None]).float()
    return state


def save_container(path, depth: int = DEPTH):
    """REPA's train.py container; 'ema' and 'model' differ."""
    ema, model = official_state_dict(0, depth), official_state_dict(1, depth)
    torch.save({"model": model, "ema": ema, "opt": {}, "args": argparse.Namespace(model="custom", qk_norm=False),
                "steps": 700}, path)
    return {name: value.numpy() for name, value in ema.items()}, {name: value.numpy() for name, value in model.items()}


def restore(workdir):
    """The work directory read back as the sampling entrypoints do: config.json over the defaults, then restore."""
    config = diffusion_configs.base_config()
    with open(os.path.join(workdir, "config.json")) as file:
        config.update(json.load(file))
    experiment = build_experiment(config)
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), save_every=1)
    state, _ = checkpointer.restore(abstract_like(experiment.state))
    checkpointer.close()
    return config, experiment.model, state


def test_import_restores_the_converted_weights(tmp_path):
    path, workdir = tmp_path / "0000700.pt", str(tmp_path / "run")
    ema, model_weights = save_container(path)
    import_checkpoint(tiny_sit_config(), workdir, checkpoint_path=str(path))
    config, model, state = restore(workdir)
    assert config.align.method == "none" and int(state.step) == 700 and set(state.params) == {"sit"}
    expected = sit_params_from_state_dict(ema, model)
    chex.assert_trees_all_equal(jax.device_get(state.ema_params["sit"]), expected)
    chex.assert_trees_all_equal(jax.device_get(state.params["sit"]), expected)
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        import_checkpoint(tiny_sit_config(), workdir, checkpoint_path=str(path))

    raw = str(tmp_path / "raw")
    import_checkpoint(tiny_sit_config(), raw, checkpoint_path=str(path), weights="model", step=5)
    _, _, state = restore(raw)
    assert int(state.step) == 5
    chex.assert_trees_all_equal(jax.device_get(state.params["sit"]),
                 sit_params_from_state_dict(model_weights, model))


def test_shape_mismatch_is_named(tmp_path):
    path = tmp_path / "deeper.pt"
    save_container(path, depth=DEPTH + 1)
    with pytest.raises(CheckpointMismatchError, match=f"depth: file {DEPTH + 1}, config {DEPTH}"):
        import_checkpoint(tiny_sit_config(), str(tmp_path / "run"), checkpoint_path=str(path))
    assert not os.path.exists(tmp_path / "run" / "config.json")


def test_cli_errors_end_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "train.import_checkpoint", f"--checkpoint={tmp_path / 'missing.pt'}",
         f"--workdir={tmp_path / 'run'}", "--config=configs/diffusion.py:cpu"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: no checkpoint file at '{tmp_path / 'missing.pt'}'"


def test_keep_projector_imports_the_projector(tmp_path, monkeypatch):
    """An aligned config keeps its projector; the encoder (only built, never run here) is a tiny stand-in."""
    from jaxrep.align.encoder import FrozenEncoder
    from jaxrep.align.repa import MLPProjector
    from jaxrep.experiments import alignment
    from jaxrep.nn.vit import ViT
    from jaxrep.weights.convert_projector import projector_params_from_state_dict

    encoder = FrozenEncoder(ViT(width=8, depth=1, num_heads=1, patch_size=4), {}, 32)  # 8 = the file's z_dim
    monkeypatch.setattr(alignment, "load_encoder", lambda *args, **kwargs: encoder)
    config = diffusion_configs.get_config("cpu_repa")
    config.model.update(patch_size=PATCH, hidden_size=WIDTH, depth=DEPTH, num_heads=HEADS)
    config.update(num_devices=1)
    config.align.update(projector_dim=16, encoder=dict(config.align.encoder, path=str(tmp_path)))
    path, workdir = tmp_path / "aligned.pt", str(tmp_path / "run")
    ema, _ = save_container(path)
    import_checkpoint(config, workdir, checkpoint_path=str(path), keep_projector=True)
    saved, _, state = restore(workdir)
    assert saved.align.method == "repa"
    expected = projector_params_from_state_dict(ema, MLPProjector(8, 16), hidden_size=WIDTH)
    chex.assert_trees_all_equal(jax.device_get(state.ema_params["projector"]), expected)


def test_cli_imports(tmp_path):
    path, workdir = tmp_path / "0000700.pt", tmp_path / "run"
    _, model_weights = save_container(path)
    overrides = [f"--config.model.{name}={value}" for name, value in
                 dict(patch_size=PATCH, hidden_size=WIDTH, depth=DEPTH, num_heads=HEADS).items()]
    result = subprocess.run(
        [sys.executable, "-m", "train.import_checkpoint", f"--checkpoint={path}", f"--workdir={workdir}",
         "--config=configs/diffusion.py:cpu", "--config.num_devices=1", *overrides, "--weights=model", "--step=3"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    _, model, state = restore(str(workdir))
    assert int(state.step) == 3
    chex.assert_trees_all_equal(jax.device_get(state.ema_params["sit"]),
                 sit_params_from_state_dict(model_weights, model))

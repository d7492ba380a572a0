"""The in-repo target encoder: its pre-training objective, the orbax checkpoint it writes, and automatic
training on the first aligned run."""

import os
import signal
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import encoder as encoder_configs
from jaxrep.config_checks import ConfigError
from jaxrep.data import ColoredShapes
from jaxrep.experiments import diffusion as diffusion_experiment
from jaxrep.experiments import encoder as encoder_experiment
from jaxrep.experiments.factor_training import describe_holdout_accuracy
from jaxrep.nn.vit import ViT
from jaxrep.run import loop
from jaxrep.run.logging import read_metrics
from jaxrep.weights.encoder import load_encoder, read_encoder_metadata, save_encoder
from tests.helpers import tiny_diffusion_config as tiny_config
from train.cli import run_main


def tiny_encoder_config(**overrides):
    config = encoder_configs.get_config("shapes32")
    config.update(total_steps=4, batch_size=16, log_every=2)
    config.model.update(width=16, depth=1, num_heads=2)
    config.optim.warmup_steps = 1
    config.update(overrides)
    return config


def test_pretraining_loss_at_zero_heads_is_log_class_counts():
    source = ColoredShapes()
    vit = ViT(width=16, depth=1, num_heads=2, patch_size=4, pos_embed_grid=8)
    heads = encoder_experiment.TokenHeads(tuple(source.factor_sizes))
    params = {"vit": vit.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"],
              "heads": jax.tree.map(jnp.zeros_like, heads.init(jax.random.key(1), jnp.zeros((1, 64, 16)))["params"])}
    batch = {"image": np.stack([source[i]["image"] for i in (0, 500)]),
             "factors": np.stack([source[i]["factors"] for i in (0, 500)])}
    loss_fn = encoder_experiment.make_pretraining_loss(vit, heads, image_size=32, coverage_weight=0.5)
    loss, metrics = jax.jit(loss_fn)(params, batch, None, 0)
    # Uniform logits: cross-entropy log K per factor; a zero coverage logit: log 2 whatever the target.
    np.testing.assert_allclose(metrics["factor_loss"], np.mean(np.log(source.factor_sizes)), rtol=1e-6)
    np.testing.assert_allclose(metrics["coverage_loss"], np.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(loss, np.mean(np.log(source.factor_sizes)) + 0.5 * np.log(2.0), rtol=1e-6)


def test_a_saved_encoder_loads_back_exactly_and_a_bad_config_trains_nothing(tmp_path):
    vit = ViT(width=16, depth=1, num_heads=2, patch_size=4, pos_embed_grid=8)
    params = vit.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    save_encoder(str(tmp_path / "encoder"), vit, params, image_size=32, info={"steps": 0})
    loaded = load_encoder("checkpoint", str(tmp_path / "encoder"))
    assert loaded.model == vit and loaded.image_size == 32 and loaded.grid_size == 8
    chex.assert_trees_all_equal(loaded.params, params)
    with pytest.raises(ConfigError, match="^model.patch_size:"):
        encoder_experiment.train_encoder(tiny_encoder_config(image_size=30), str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()


def test_the_missing_encoder_is_a_stage_of_its_own_and_builders_never_train(tmp_path, monkeypatch, capsys):
    tiny = tiny_encoder_config()
    monkeypatch.setattr(encoder_configs, "get_config", lambda preset: tiny)
    path = str(tmp_path / "encoder")
    config = tiny_config(**{"align.method": "repa", "align.depth": 1, "align.projector_dim": 16,
                            "align.encoder.path": path, "total_steps": 2, "sample_every": 0})
    with pytest.raises(ConfigError, match=r"^align.encoder.path: no encoder checkpoint at .*make it first with "
                                          r"`python -m train.encoder --config=configs/encoder.py:shapes32 "):
        diffusion_experiment.build_experiment(config)
    assert not os.path.exists(path)
    # The entrypoint's runner (train.cli.run_main, as `python -m train.diffusion` calls it) runs it first.
    state = run_main(diffusion_experiment.train_and_evaluate, config, str(tmp_path / "run"),
                     prerequisites=diffusion_experiment.prerequisites)
    assert "stage train.encoder: align.encoder.path=" in capsys.readouterr().out
    info = read_encoder_metadata(path)["info"]
    assert info["steps"] == 4 and 0.0 <= info["holdout_factor_accuracy"] <= 1.0 and int(state.step) == 2
    assert [r["step"] for r in read_metrics(path)] == [2, 4, 4]  # the stage's own metrics, in its own directory
    stamp = os.path.getmtime(path)
    time.sleep(0.01)
    monkeypatch.setattr(encoder_experiment, "train_encoder", lambda *a, **k: pytest.fail("retrained"))
    assert diffusion_experiment.prerequisites(config, str(tmp_path / "run"))[0].missing() is False
    assert diffusion_experiment.build_experiment(config).alignment.encoder.width == 16
    assert os.path.getmtime(path) == stamp


def test_a_sigterm_during_the_encoder_stage_stops_it_at_the_next_step_and_saves_nothing(tmp_path, monkeypatch,
                                                                                      capsys):
    tiny = tiny_encoder_config(total_steps=50)
    monkeypatch.setattr(encoder_configs, "get_config", lambda preset: tiny)
    path = str(tmp_path / "encoder")
    config = tiny_config(**{"align.method": "repa", "align.depth": 1, "align.projector_dim": 16,
                            "align.encoder.path": path, "total_steps": 2, "sample_every": 0})
    run_hooks = loop._run_hooks

    def sigterm_at_step_3(hooks, state, step, logger, *, end):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # the stage's loop has no checkpointer, yet must stop
        return run_hooks(hooks, state, step, logger, end=end)

    monkeypatch.setattr(loop, "_run_hooks", sigterm_at_step_3)
    result = run_main(diffusion_experiment.train_and_evaluate, config, str(tmp_path / "run"), preemptible=True,
                      prerequisites=diffusion_experiment.prerequisites)
    out = capsys.readouterr().out
    assert result is None and "SIGTERM: stopped at step 4, nothing saved" in out
    assert "SIGTERM: the encoder's training stopped; nothing saved" in out
    assert diffusion_experiment.prerequisites(config, str(tmp_path / "run"))[0].missing()  # rerunning trains it
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.slow
def test_shapes32_preset_learns_the_factors(tmp_path):
    """The preset's wall-clock (<= 3 min on 2 cores) is a benchmark figure, not asserted here."""
    encoder_experiment.train_encoder(encoder_configs.get_config("shapes32"), str(tmp_path), show_progress=False)
    assert read_encoder_metadata(str(tmp_path))["info"]["holdout_factor_accuracy"] > 0.6  # chance: ~0.26


def test_held_out_accuracy_is_named_in_the_datasets_words():
    class FashionLike:
        factor_names = ("class",)

    assert describe_holdout_accuracy(FashionLike(), [0.925], 6000) == (
        "class accuracy 0.925 on 6000 held-out training images")
    assert describe_holdout_accuracy(FashionLike(), [0.8], 6000, kind="per-token ") == (
        "per-token class accuracy 0.800 on 6000 held-out training images")
    shapes = ColoredShapes()
    assert describe_holdout_accuracy(shapes, [0.5], 10, kind="per-token ") == (
        f"per-token factor accuracy 0.500 (mean over {', '.join(shapes.factor_names)}) on 10 held-out images")
    per_factor = describe_holdout_accuracy(shapes, [0.9, 0.8, 0.7, 0.6, 0.5], 10)
    assert per_factor == ("factor accuracy on 10 held-out images: shape 0.900, color 0.800, scale 0.700, "
                          "pos_x 0.600, pos_y 0.500")

"""REPA / iREPA / ERW inside SiT training: the aligned objective against a hand computation, a frozen
encoder (zero gradients, not in the optimizer), 8 devices = 1 device, ERW's transfer and resume, and bad
inputs failing with clear messages."""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.align.encoder import make_target_fn
from jaxrep.align.hog import hog_cells
from jaxrep.align.objective import make_alignment_term, make_erw_warmup_loss, make_projector
from jaxrep.align.targets import preprocess_images, resize_token_grid
from jaxrep.config_checks import ConfigError
from jaxrep.diffusion.objective import draw_training_noise, make_diffusion_loss
from jaxrep.experiments import alignment as alignment_experiment
from jaxrep.experiments import diffusion as diffusion_experiment
from jaxrep.experiments.checkpoint_diagnostics import checkpoint_diagnostics
from jaxrep.nn.sit import SiT
from jaxrep.nn.vit import ViT
from jaxrep.run.checkpoint import Checkpointer, abstract_like
from jaxrep.run.logging import read_metrics
from jaxrep.training import example_keys
from jaxrep.weights.encoder import EncoderFileError, load_encoder, save_encoder
from tests.helpers import assert_trees_equal, first_batches, run_steps, with_overrides
from tests.helpers import tiny_diffusion_config as tiny_config

ENCODER_WIDTH = 16


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """An in-repo encoder checkpoint: a random ViT with an 8 x 8 grid at 32 px (the tiny SiT's is 4 x 4)."""
    directory = str(tmp_path_factory.mktemp("encoder"))
    model = ViT(width=ENCODER_WIDTH, depth=1, num_heads=2, patch_size=4, pos_embed_grid=8)
    params = model.init(jax.random.key(7), jnp.zeros((1, 32, 32, 3)))["params"]
    save_encoder(directory, model, params, image_size=32, info={"note": "random, for tests"})
    return directory


def aligned_config(encoder_dir, method, **overrides):
    values = {"align.method": method, "align.depth": 1, "align.encoder.path": encoder_dir, "align.projector_dim": 16,
              "align.coef": 0.7, "align.erw.warmup_steps": 2, "align.erw.l2r_depth": 1, "align.erw.half_life": 2}
    return tiny_config(**{**values, **overrides})


def _toy_batch(seed=0, batch=4):
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.uniform(-1, 1, (batch, 32, 32, 3)).astype(np.float32)),
            "label": jnp.asarray(rng.integers(0, 3, batch).astype(np.int32))}


def _toy_pieces(method, encoder_dir):
    model = SiT(input_size=32, patch_size=8, in_channels=3, hidden_size=32, depth=2, num_heads=2, num_classes=3)
    encoder = load_encoder("checkpoint", encoder_dir)
    projector = make_projector(method, out_dim=encoder.width, hidden_dim=16, grid_hw=(4, 4))
    @jax.jit
    def init(key):
        x = jnp.zeros((1, 32, 32, 3))
        params = {"sit": model.init(key, x, jnp.zeros((1,)), jnp.zeros((1,), jnp.int32))["params"],
                  "projector": projector.init(key, jnp.zeros((1, 16, 32)))["params"]}
        # Non-zero adaLN/final layers, so every block and the velocity depend on the params.
        return jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(p.size), p.shape), params)

    return model, encoder, projector, init(jax.random.key(3))


@pytest.mark.parametrize("method", ["repa", "irepa", "erw"])
def test_aligned_objective_is_flow_loss_plus_weighted_negative_cosine(method, encoder_dir):
    model, encoder, projector, params = _toy_pieces(method, encoder_dir)
    gamma = 0.6 if method == "irepa" else None
    targets = make_target_fn(encoder, grid_hw=(4, 4), spatial_norm_gamma=gamma)
    batch = _toy_batch()
    batch["align_target"] = jax.jit(targets)(encoder.params, batch["image"])
    term = make_alignment_term(method, projector=projector, depth=1, coef=0.7, erw_warmup_steps=10,
                               erw_half_life=4, total_steps=100)
    aligned = make_diffusion_loss(model, alignment=term)
    vanilla = make_diffusion_loss(model)
    keys = example_keys(jax.random.key_data(jax.random.key(5)), jnp.int32(0), 0, 4)
    step = jnp.int32(14)  # ERW: 4 steps = one half-life after the warmup -> 0.35
    loss, metrics = jax.jit(aligned)(params, batch, keys, step)
    flow, _ = jax.jit(vanilla)(params, batch, keys, step)

    # By hand: the same t / noise / dropped labels, h after block 1, projector, NumPy cosines.
    t, noise, drop = draw_training_noise(keys, (32, 32, 3), time_weighting="uniform", class_dropout_prob=0.1)
    labels = jnp.where(drop, 3, batch["label"])
    x_t = (1 - t)[:, None, None, None] * batch["image"] + t[:, None, None, None] * noise
    _, hidden = jax.jit(lambda p: model.apply(p, x_t, t, labels, hidden_at=1))({"params": params["sit"]})
    projected = np.asarray(jax.jit(projector.apply)({"params": params["projector"]}, hidden), np.float64)
    target = np.asarray(batch["align_target"], np.float64)
    cosine = (projected * target).sum(-1) / np.linalg.norm(projected, axis=-1) / np.linalg.norm(target, axis=-1)
    weight = 0.7 * 2 ** -1 if method == "erw" else 0.7
    np.testing.assert_allclose(metrics["flow_loss"], flow, rtol=1e-6)
    np.testing.assert_allclose(metrics["align_loss"], -cosine.mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["align_weight"], weight, rtol=1e-6)
    np.testing.assert_allclose(loss, flow + weight * -cosine.mean(), rtol=1e-5)
    if method == "irepa":  # targets are z-scored over the tokens: (y - 0.6 mean) / (std + 1e-6), ddof 1
        tokens = np.asarray(resize_token_grid(encoder.model.apply(
            {"params": encoder.params}, preprocess_images((batch["image"] + 1) / 2, image_size=32)), (4, 4)))
        expected = (tokens - 0.6 * tokens.mean(1, keepdims=True)) / (tokens.std(1, ddof=1, keepdims=True) + 1e-6)
        np.testing.assert_allclose(batch["align_target"], expected, rtol=1e-4, atol=1e-5)


def test_erw_warmup_objective_reads_clean_input_at_time_zero(encoder_dir):
    model, encoder, projector, params = _toy_pieces("erw", encoder_dir)
    l2r = model.clone(depth=1)
    l2r_params = {"sit": {k: v for k, v in params["sit"].items() if k != "blocks_1"},
                  "projector": params["projector"]}
    batch = _toy_batch(1)
    batch["align_target"] = jax.jit(make_target_fn(encoder, grid_hw=(4, 4)))(encoder.params, batch["image"])
    keys = example_keys(jax.random.key_data(jax.random.key(5)), jnp.int32(0), 0, 4)
    loss, metrics = jax.jit(make_erw_warmup_loss(l2r, projector, coef=0.5, class_dropout_prob=0.0))(
        l2r_params, batch, keys, jnp.int32(0))
    _, hidden = jax.jit(lambda p: model.apply(p, batch["image"], jnp.zeros(4), batch["label"], hidden_at=1))(
        {"params": params["sit"]})
    projected = np.asarray(jax.jit(projector.apply)({"params": params["projector"]}, hidden), np.float64)
    target = np.asarray(batch["align_target"], np.float64)
    cosine = (projected * target).sum(-1) / np.linalg.norm(projected, axis=-1) / np.linalg.norm(target, axis=-1)
    np.testing.assert_allclose(metrics["align_loss"], -cosine.mean(), rtol=1e-5)
    np.testing.assert_allclose(loss, 0.5 * -cosine.mean(), rtol=1e-5)


@pytest.mark.parametrize("method", ["repa", "irepa", "erw_warmup"])
def test_gradients_into_the_encoder_are_exactly_zero(method, encoder_dir):
    model, encoder, projector, params = _toy_pieces("erw" if method == "erw_warmup" else method, encoder_dir)
    targets = make_target_fn(encoder, grid_hw=(4, 4), spatial_norm_gamma=0.6 if method == "irepa" else None)
    if method == "erw_warmup":
        loss_fn = make_erw_warmup_loss(model, projector)
    else:
        loss_fn = make_diffusion_loss(model, alignment=make_alignment_term(method, projector=projector, depth=1,
                                                                           coef=1.0))
    batch = _toy_batch(2)
    keys = example_keys(jax.random.key_data(jax.random.key(5)), jnp.int32(0), 0, 4)

    def pipeline(encoder_params, params):  # encoder -> targets -> aligned loss, end to end
        full = {**batch, "align_target": targets(encoder_params, batch["image"])}
        return loss_fn(params, full, keys, jnp.int32(3))[0]

    encoder_grads, param_grads = jax.jit(jax.grad(pipeline, argnums=(0, 1)))(encoder.params, params)
    for leaf in jax.tree.leaves(encoder_grads):
        np.testing.assert_array_equal(leaf, np.zeros_like(leaf))
    assert float(jnp.abs(param_grads["projector"]["conv" if method == "irepa" else "Dense_0"]["kernel"]).max()) > 0
    assert float(jnp.abs(param_grads["sit"]["blocks_0"]["attn"]["qkv"]["kernel"]).max()) > 0


def test_encoder_is_frozen_outside_the_optimizer_and_tokens_are_resized(encoder_dir):
    config = aligned_config(encoder_dir, "repa")
    experiment = diffusion_experiment.build_experiment(config)
    assert set(experiment.state.params) == {"sit", "projector"}
    fresh_opt = experiment.tx.init(experiment.state.params)
    assert jax.tree.structure(experiment.state.opt_state) == jax.tree.structure(fresh_opt)
    encoder = load_encoder("checkpoint", encoder_dir)
    batches = first_batches(config, experiment.mesh, 2)
    prepared = [experiment.prepare_batch(b) for b in batches]
    # The encoder's 8 x 8 grid is resized bilinearly to the SiT's 4 x 4 grid.
    tokens = encoder.model.apply({"params": encoder.params},
                                 preprocess_images((np.asarray(batches[0]["image"]) + 1) / 2, image_size=32))
    assert tokens.shape == (8, 64, ENCODER_WIDTH) and prepared[0]["align_target"].shape == (8, 16, ENCODER_WIDTH)
    np.testing.assert_allclose(prepared[0]["align_target"], resize_token_grid(tokens, (4, 4)), atol=1e-5)
    state, _ = run_steps(experiment.jitted_step, experiment.state, prepared)
    assert_trees_equal(experiment.alignment.encoder_params, encoder.params)
    assert not np.array_equal(state.params["projector"]["Dense_0"]["kernel"],
                              experiment.state.params["projector"]["Dense_0"]["kernel"])


def test_alignment_diagnostics_are_logged_every_n_steps(encoder_dir, tmp_path):
    config = aligned_config(encoder_dir, "repa", total_steps=4, checkpoint_every=4, **{"align.diagnostics_every": 2})
    diffusion_experiment.train_and_evaluate(config, str(tmp_path))
    records = [r for r in read_metrics(str(tmp_path)) if "align_cka" in r]
    assert [r["step"] for r in records] == [2, 4]  # every 2 steps; the end hook covers the last
    for record in records:
        assert 0.0 <= record["align_cka"] <= 1.0 and 0.0 <= record["align_mutual_knn"] <= 1.0
        assert 1.0 <= record["align_effective_rank"] <= 32 and abs(record["align_lds_hidden"]) <= 2.0
    assert records[0]["align_lds_target"] == records[1]["align_lds_target"]  # a fixed probe batch
    assert records[0]["align_cka"] != records[1]["align_cka"]  # the block's tokens moved


@pytest.mark.slow  # the study tool's diagnostics; the training-time probe is tested above
def test_checkpoint_diagnostics_reproduce_the_logged_ones_and_cover_vanilla(encoder_dir, tmp_path):
    config = aligned_config(encoder_dir, "repa", total_steps=4, checkpoint_every=2, keep_checkpoints=3,
                            **{"align.diagnostics_every": 2})
    diffusion_experiment.train_and_evaluate(config, str(tmp_path / "repa"))
    logged = {r["step"]: r for r in read_metrics(str(tmp_path / "repa")) if "align_cka" in r}
    after = checkpoint_diagnostics(str(tmp_path / "repa"), config)
    assert sorted(after) == [2, 4]
    for step, values in after.items():
        assert set(values) == {name for name in logged[step] if name.startswith("align_")}
        for name, value in values.items():
            np.testing.assert_allclose(value, logged[step][name], rtol=1e-5, atol=1e-6)
    vanilla = tiny_config(total_steps=2, checkpoint_every=2)  # the same SiT, no encoder in its run
    diffusion_experiment.train_and_evaluate(vanilla, str(tmp_path / "vanilla"))
    assert not [r for r in read_metrics(str(tmp_path / "vanilla")) if "align_cka" in r]
    of_vanilla = checkpoint_diagnostics(str(tmp_path / "vanilla"), config)
    assert sorted(of_vanilla) == [2]
    assert of_vanilla[2]["align_lds_target"] == after[2]["align_lds_target"]  # the same probe targets
    assert of_vanilla[2]["align_cka"] != after[2]["align_cka"]  # other block tokens
    with pytest.raises(ValueError, match="aligned_config: align.method is 'none'"):
        checkpoint_diagnostics(str(tmp_path / "vanilla"), vanilla)
    with pytest.raises(ValueError, match="aligned_config: its SiT"):
        checkpoint_diagnostics(str(tmp_path / "vanilla"), with_overrides(config, {"model.hidden_size": 48}))


@pytest.mark.slow  # REPA's several-encoder option; the one-encoder path runs in every aligned test
@pytest.mark.parametrize("method", ["repa", "erw"])
def test_several_target_encoders_average_their_projection_losses(method, encoder_dir, tmp_path):
    # REPA's SILoss with a list of encoders: each has its own projector; the loss is the mean over encoders.
    second_dir = str(tmp_path / "second")
    second = ViT(width=8, depth=1, num_heads=2, patch_size=4, pos_embed_grid=8)
    save_encoder(second_dir, second, second.init(jax.random.key(8), jnp.zeros((1, 32, 32, 3)))["params"],
                 image_size=32, info={"note": "random, for tests"})
    config = aligned_config(encoder_dir, method, **{"align.encoder.path": f"{encoder_dir},{second_dir}",
                                                    "optim.warmup_steps": 0})  # the first step updates
    stage = "erw_warmup" if method == "erw" else "main"
    experiment = diffusion_experiment.build_experiment(config, jax.devices()[:1], stage=stage)
    assert [p["Dense_2"]["kernel"].shape[-1] for p in experiment.state.params["projector"]] == [ENCODER_WIDTH, 8]
    batch = experiment.prepare_batch(first_batches(config, experiment.mesh, 1)[0])
    assert [t.shape[-1] for t in batch["align_target"]] == [ENCODER_WIDTH, 8]
    keys = example_keys(experiment.state.rng, experiment.state.step, 0, config.batch_size)
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(p.size), p.shape),
                          experiment.state.params)
    _, metrics = jax.jit(experiment.loss_fn)(params, batch, keys, jnp.int32(0))
    singles = []
    for index in range(2):  # the same loss with one encoder at a time
        single = {**batch, "align_target": batch["align_target"][index]}
        single_params = {**params, "projector": params["projector"][index]}
        term_or_projector = experiment.alignment.projector[index]
        if method == "erw":
            loss_fn = make_erw_warmup_loss(experiment.model, term_or_projector, coef=config.align.erw.warmup_coef)
        else:
            term = make_alignment_term(method, projector=term_or_projector, depth=1, coef=config.align.coef)
            loss_fn = make_diffusion_loss(experiment.model, alignment=term, time_weighting="lognormal")
        singles.append(jax.jit(loss_fn)(single_params, single, keys, jnp.int32(0))[1]["align_loss"])
    np.testing.assert_allclose(metrics["align_loss"], np.mean(singles), rtol=1e-5)
    # host copies taken before the step, which donates its state
    projectors = jax.tree.map(lambda p: np.array(p, copy=True), experiment.state.params["projector"])
    state, _ = experiment.jitted_step(experiment.state, batch)
    for before, after in zip(projectors, state.params["projector"]):  # the step trains both projectors
        assert not np.allclose(before["Dense_2"]["kernel"], after["Dense_2"]["kernel"])


@pytest.mark.parametrize("method", ["repa", pytest.param("irepa", marks=pytest.mark.slow)])
def test_aligned_step_on_eight_devices_equals_one_device(method, encoder_dir):
    config = aligned_config(encoder_dir, method, batch_size=16, **{"optim.eps": 1e-3})
    one = diffusion_experiment.build_experiment(config, jax.devices()[:1])
    eight = diffusion_experiment.build_experiment(config, jax.devices()[:8])
    batches_1 = [one.prepare_batch(b) for b in first_batches(config, one.mesh, 3)]
    batches_8 = [eight.prepare_batch(b) for b in first_batches(config, eight.mesh, 3)]
    assert batches_8[0]["align_target"].sharding.num_devices == 8
    np.testing.assert_allclose(batches_8[0]["align_target"], batches_1[0]["align_target"], rtol=1e-5, atol=1e-6)
    state_1, losses_1 = run_steps(one.jitted_step, one.state, batches_1)
    state_8, losses_8 = run_steps(eight.jitted_step, eight.state, batches_8)
    np.testing.assert_allclose(losses_8, losses_1, rtol=1e-4)
    chex.assert_trees_all_close(state_8.params, state_1.params, rtol=1e-4, atol=1e-5)


def _restore(experiment, directory):
    return Checkpointer(os.path.join(directory, "checkpoints"), save_every=1).restore(abstract_like(experiment.state))


def test_erw_runs_warmup_then_transplants_the_warmed_up_blocks(encoder_dir, tmp_path):
    config = aligned_config(encoder_dir, "erw", total_steps=3, checkpoint_every=1)
    final = diffusion_experiment.train_and_evaluate(config, str(tmp_path))
    assert int(final.step) == 3
    assert [r["step"] for r in read_metrics(str(tmp_path / alignment_experiment.ERW_WARMUP_DIR))] == [1, 2]
    (record,) = read_metrics(str(tmp_path))
    # The update logged as step 3 is the first of phase 2 (state step s = S_w = 2): lambda = c0.
    assert record["step"] == 3 and record["align_weight"] == pytest.approx(0.7)

    warmup = diffusion_experiment.build_experiment(config, stage="erw_warmup")
    main = diffusion_experiment.build_experiment(config)
    warm_state, _ = _restore(warmup, str(tmp_path / alignment_experiment.ERW_WARMUP_DIR))
    assert int(warm_state.step) == 2 and set(warm_state.params["sit"]) == {
        "x_embedder", "t_embedder", "y_embedder", "blocks_0", "final_layer"}
    start = alignment_experiment.erw_transfer(warm_state.params, main.state, main.tx, l2r_depth=1, warmup_steps=2,
                                         mesh=main.mesh)
    for key in ("x_embedder", "t_embedder", "y_embedder", "blocks_0"):
        assert_trees_equal(start.params["sit"][key], warm_state.params["sit"][key])
    assert_trees_equal(start.params["projector"], warm_state.params["projector"])
    for key in ("blocks_1", "final_layer"):  # fresh initialisation beyond the L2R region
        assert_trees_equal(start.params["sit"][key], main.state.params["sit"][key])
    # The warmup did train (adaLN-Zero: at first only the modulation receives gradient, so compare that).
    assert not np.array_equal(warm_state.params["sit"]["blocks_0"]["adaLN_modulation"]["kernel"],
                              main.state.params["sit"]["blocks_0"]["adaLN_modulation"]["kernel"])
    assert_trees_equal(start.ema_params, start.params)
    assert_trees_equal(start.opt_state, main.tx.init(start.params))
    assert int(start.step) == 2
    # The main stage's first step started from exactly that state.
    batch = main.prepare_batch(_first_batches_after(config, main, warmup_batches=2))
    expected, _ = main.jitted_step(start, batch)
    assert_trees_equal(final.params, expected.params)


@pytest.mark.slow
def test_erw_interrupted_inside_the_warmup_resumes_bitwise(encoder_dir, tmp_path):
    config = aligned_config(encoder_dir, "erw", total_steps=5, checkpoint_every=1)
    reference = diffusion_experiment.train_and_evaluate(config, str(tmp_path / "whole"))
    warmup = diffusion_experiment.build_experiment(config, stage="erw_warmup")
    diffusion_experiment.run_stage(warmup, str(tmp_path / "resumed" / alignment_experiment.ERW_WARMUP_DIR), 1)
    resumed = diffusion_experiment.train_and_evaluate(config, str(tmp_path / "resumed"))
    assert int(resumed.step) == 5
    assert_trees_equal(resumed.params, reference.params)
    assert_trees_equal(resumed.ema_params, reference.ema_params)
    assert_trees_equal(resumed.opt_state, reference.opt_state)


def _first_batches_after(config, experiment, warmup_batches):
    """The global batch the main stage sees first: the data iterator continues after the warmup's batches."""
    from jaxrep import parallel
    from jaxrep.data import make_dataset, make_iterator

    iterator = make_iterator(make_dataset(experiment.source, global_batch_size=config.batch_size,
                                          root_key=jax.random.key(config.seed)))
    for _ in range(warmup_batches):
        next(iterator)
    return parallel.global_batch(next(iterator), experiment.mesh)


def test_random_encoder_control_keeps_the_architecture_and_replaces_the_weights(encoder_dir):
    trained, random = load_encoder("checkpoint", encoder_dir), load_encoder("random", encoder_dir)
    assert random.model == trained.model and random.image_size == trained.image_size
    assert jax.tree.structure(random.params) == jax.tree.structure(trained.params)
    assert all(a.shape == b.shape for a, b in zip(jax.tree.leaves(random.params), jax.tree.leaves(trained.params)))
    assert not np.allclose(random.params["blocks_0"]["attn"]["qkv"]["kernel"],
                           trained.params["blocks_0"]["attn"]["qkv"]["kernel"])
    expected = trained.model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]  # seed 0, documented
    assert_trees_equal(random.params, expected)
    config = aligned_config(encoder_dir, "repa", **{"align.encoder.source": "random"})
    experiment = diffusion_experiment.build_experiment(config)
    assert_trees_equal(experiment.alignment.encoder_params, expected)


@pytest.mark.slow  # the HOG control end to end; HOG itself is tested against skimage in tests/align/test_hog.py
def test_hog_control_aligns_to_one_hog_cell_per_patch(tmp_path):
    # No encoder file: the tiny SiT's 4 x 4 grid on 32-px images gives 8-px HOG cells, 9 orientations wide.
    config = aligned_config(str(tmp_path / "absent"), "repa", **{"align.encoder.source": "hog"})
    experiment = diffusion_experiment.build_experiment(config)
    batches = first_batches(config, experiment.mesh, 2)
    prepared = [experiment.prepare_batch(batch) for batch in batches]
    expected = hog_cells(jnp.asarray(batches[0]["image"]), cell_size=8).reshape(-1, 16, 9)
    np.testing.assert_allclose(prepared[0]["align_target"], expected, atol=1e-4)
    state, losses = run_steps(experiment.jitted_step, experiment.state, prepared)
    assert np.all(np.isfinite(losses)) and state.params["projector"]["Dense_2"]["kernel"].shape[-1] == 9
    bad = aligned_config("", "repa", **{"align.encoder.source": "hog", "align.encoder.image_size": 30})
    with pytest.raises(ConfigError, match="align.encoder.image_size: HOG needs an image side"):
        diffusion_experiment.build_experiment(bad)


def test_mismatched_token_counts_and_widths_fail_clearly(encoder_dir):
    model, encoder, projector, params = _toy_pieces("repa", encoder_dir)
    loss_fn = make_diffusion_loss(model, alignment=make_alignment_term("repa", projector=projector, depth=1, coef=1.0))
    keys = example_keys(jax.random.key_data(jax.random.key(5)), jnp.int32(0), 0, 4)
    batch = _toy_batch()
    with pytest.raises(ValueError, match=r"token count N.*resize_token_grid"):
        loss_fn(params, {**batch, "align_target": jnp.ones((4, 64, ENCODER_WIDTH))}, keys, jnp.int32(0))
    with pytest.raises(ValueError, match=r"projector's output width is not the encoder's width"):
        loss_fn(params, {**batch, "align_target": jnp.ones((4, 16, 24))}, keys, jnp.int32(0))


def test_encoder_files_of_the_wrong_kind_or_architecture_fail_clearly(encoder_dir, tmp_path):
    # A training run's checkpoint directory (state + data-iterator extra) is not an encoder.
    run = Checkpointer(tmp_path / "run" / "checkpoints", save_every=1, async_save=False)
    run.save(3, {"params": {"sit": jnp.ones(3)}}, {"data": {"position": 3}}, force=True)
    run.close()
    with pytest.raises(EncoderFileError, match="not an encoder written by train/encoder.py"):
        load_encoder("checkpoint", str(tmp_path / "run" / "checkpoints"))
    # Weights that do not fit the architecture recorded next to them (width 16 stored, 24 recorded).
    wider = ViT(width=24, depth=1, num_heads=2, patch_size=4, pos_embed_grid=8)
    save_encoder(str(tmp_path / "forged"), wider, load_encoder("checkpoint", encoder_dir).params, image_size=32)
    with pytest.raises(EncoderFileError, match=r"do not fit the architecture its metadata records.*'width': 24"):
        load_encoder("checkpoint", str(tmp_path / "forged"))
    with pytest.raises(EncoderFileError, match="no encoder checkpoint directory"):
        load_encoder("checkpoint", str(tmp_path / "missing"))


def test_dinov2_file_of_another_architecture_fails_clearly(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    hf = transformers.Dinov2Model(transformers.Dinov2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256, image_size=224,
        patch_size=14))
    path = str(tmp_path / "dinov2_tiny.safetensors")
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, path)
    encoder = load_encoder("dinov2", path, preset="tiny", image_size=112)
    assert encoder.grid_size == 8 and encoder.model.pos_embed_grid == 8
    tokens = make_target_fn(encoder, grid_hw=(4, 4))(encoder.params, jnp.zeros((2, 32, 32, 3)))
    assert tokens.shape == (2, 16, 64)
    with pytest.raises(EncoderFileError, match=r"(?s)is not a DINOv2 S/14 file.*checkpoint has 2 blocks, model has 12"):
        load_encoder("dinov2", path, preset="S/14")


@pytest.mark.parametrize("override, field", [
    ({"align.method": "repa_v2"}, "align.method"),
    ({"align.depth": 3}, "align.depth"),
    ({"align.depth": 0}, "align.depth"),
    ({"align.encoder.source": "dinov2", "align.encoder.path": "/nonexistent/dinov2.pth"}, "align.encoder.path"),
    ({"align.encoder.source": "clip"}, "align.encoder.source"),
    ({"align.method": "erw", "align.erw.warmup_steps": 6}, "align.erw.warmup_steps"),
    ({"align.method": "erw", "align.erw.l2r_depth": 5}, "align.erw.l2r_depth"),
    ({"align.conv_kernel": 2}, "align.conv_kernel"),
])
def test_bad_alignment_config_fails_before_compiling_naming_the_field(override, field, encoder_dir, monkeypatch):
    compiles = []
    monkeypatch.setattr(jax.stages.Lowered, "compile", lambda *a, **k: compiles.append(1))
    with pytest.raises(ConfigError, match=f"^{field}:"):
        diffusion_experiment.build_experiment(aligned_config(encoder_dir, "repa", **override))
    assert not compiles


def test_latent_data_needs_the_raw_images_for_the_encoder(encoder_dir, tmp_path):
    latents = np.random.default_rng(0).normal(size=(16, 32, 32, 4)).astype(np.float32)
    np.save(tmp_path / "latents.npy", latents)
    config = aligned_config(encoder_dir, "repa",
                            **{"data.source": "arrays", "data.path": str(tmp_path / "latents.npy")})
    with pytest.raises(ConfigError, match="^align.encoder.images_path: the training data has 4 channels"):
        diffusion_experiment.build_experiment(config)
    images = np.random.default_rng(1).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    config.align.encoder.images_path = str(tmp_path / "images.npy")
    experiment = diffusion_experiment.build_experiment(config)
    assert experiment.data_keys == ("image", "label", "encoder_image")
    batch = experiment.prepare_batch(_first_batches_with_keys(experiment, 1)[0])
    assert set(batch) == {"image", "label", "align_target"} and batch["align_target"].shape == (8, 16, ENCODER_WIDTH)
    np.save(tmp_path / "images.npy", images[:15])
    with pytest.raises(ConfigError, match="15 images for 16 latents"):
        diffusion_experiment.build_experiment(config)


def _first_batches_with_keys(experiment, count):
    from jaxrep import parallel
    from jaxrep.data import make_dataset, make_iterator

    dataset = make_dataset(experiment.source, global_batch_size=experiment.config.batch_size,
                           root_key=jax.random.key(0), keys=experiment.data_keys)
    iterator = make_iterator(dataset)
    return [parallel.global_batch(next(iterator), experiment.mesh) for _ in range(count)]


def test_presets_resolve_and_validate():
    from configs import diffusion as diffusion_configs

    for preset in diffusion_configs.ALIGNED_PRESETS:
        config = diffusion_configs.get_config(preset)
        base, method = preset.rsplit("_", 1)
        assert config.align.method == method
        if base in diffusion_configs.CPU_BASES:
            assert config.align.encoder.source == "checkpoint"
            assert config.align.encoder.path == f"workdirs/encoder_{config.data.source}"
            assert 0 < config.align.erw.warmup_steps < config.total_steps
        else:
            # The encoder's token grid (image_size / 14) equals the SiT/2 grid of 32 x 32 (256 px) or 64 x 64
            # (512 px) latents, as in REPA.
            latent_side = 64 if base.endswith("_512") else 32
            assert config.align.encoder.source == "dinov2"
            assert config.align.encoder.image_size // 14 == latent_side // 2
            assert (config.model.use_rope, config.model.qk_norm) == ((True, True) if method == "erw" else (False, False))
    assert diffusion_configs.get_config("l2_repa").align.depth == 8  # REPA: block 8 for SiT-L and XL
    assert diffusion_configs.get_config("l2_erw").align.coef == 3.0  # ERW's c0 for L models
    xl2 = diffusion_configs.get_config("xl2_erw")
    assert (xl2.align.depth, xl2.align.coef, xl2.align.erw.l2r_depth, xl2.align.erw.warmup_steps,
            xl2.total_steps) == (14, 6.0, 4, 100_000, 300_000)
    assert diffusion_configs.get_config("b2_repa").align.depth == 4
    assert diffusion_configs.get_config("xl2_irepa").align.coef == 1.0
    b2 = diffusion_configs.get_config("b2_repa")
    b2.data.path = __file__  # an existing file: the encoder check comes next
    with pytest.raises(ConfigError, match="^align.encoder.path: no DINOv2 weights file"):
        diffusion_configs.validate(b2, num_devices=1)

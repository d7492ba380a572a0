"""The latent pipeline end to end on CPU: an image folder prepared with a tiny random-weight SD-VAE (skip / stop on a
corrupt image, kill and resume, manifest and checksums), a tiny SiT trained with REPA on the prepared records,
samples decoded to pixels and scored; and the same preparation and sampling as 2 processes started from the command
line (`--config.distributed.*`)."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.config_checks import ConfigError
from jaxrep.data import make_dataset, make_iterator
from jaxrep.data.images import ImageReadError, center_crop_adm, read_rgb
from jaxrep.data.latent_records import DatasetError, LatentRecordSource, read_manifest, verify_dataset
from jaxrep.experiments import diffusion as diffusion_experiment
from jaxrep.experiments import evaluate as evaluate_experiment
from jaxrep.experiments import prepare_latents
from jaxrep.experiments import sample as sample_experiment
from jaxrep.nn.eval_net import EvalNet
from jaxrep.nn.vit import ViT
from jaxrep.run.logging import read_metrics
from jaxrep.weights.autoencoder_kl import load_autoencoder_kl
from jaxrep.weights.encoder import save_encoder
from jaxrep.weights.features import save_eval_net
from tests.experiments import latent_fixtures as fx
from tests.helpers import distributed_flags, finish_processes, free_port, start_processes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_GOOD = fx.NUM_CLASSES * fx.IMAGES_PER_CLASS


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent_inputs")
    images = fx.make_image_folder(str(root / "images"))
    vae = fx.make_tiny_vae(str(root / "vae"))
    return images, vae


@pytest.fixture(scope="module")
def dataset(inputs, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("latents"))
    result = prepare_latents.prepare(fx.prepare_config(*inputs), directory)
    return directory, result


@pytest.fixture(scope="module")
def run_dir(dataset, tmp_path_factory):
    """A tiny SiT + REPA trained 20 steps on the prepared records, with an in-repo encoder at 16 px (4 x 4 tokens)."""
    root = tmp_path_factory.mktemp("latent_run")
    encoder_dir = str(root / "encoder")
    encoder = ViT(width=16, depth=1, num_heads=2, patch_size=4, pos_embed_grid=4)
    save_encoder(encoder_dir, encoder, encoder.init(jax.random.key(7), jnp.zeros((1, 16, 16, 3)))["params"],
                 image_size=16, info={"note": "random, for tests"})
    workdir = str(root / "run")
    diffusion_experiment.train_and_evaluate(fx.train_config(dataset[0], encoder_dir), workdir)
    return workdir


def test_preparation_writes_every_readable_image_once_with_its_vae_posterior(inputs, dataset):
    images, vae = inputs
    directory, result = dataset
    manifest = result["manifest"]
    assert manifest == read_manifest(directory) == verify_dataset(directory)
    assert manifest["num_images"] == NUM_GOOD + 1 and manifest["num_records"] == NUM_GOOD
    assert manifest["num_skipped"] == 1 and [s["skipped"] for s in manifest["shards"]] == [[], [fx.CORRUPT], []]
    assert [s["count"] for s in manifest["shards"]] == [8, 7, 3] and manifest["latent_shape"] == [8, 8, 4]
    assert manifest["classes"] == ["class_0", "class_1", "class_2"]
    source = LatentRecordSource(directory, with_images=True)
    model, params = load_autoencoder_kl(vae)
    paths = sorted(os.path.relpath(os.path.join(d, n), images) for d, _, names in os.walk(images) for n in names)
    paths.remove(fx.CORRUPT)
    for index in (0, 9, NUM_GOOD - 1):  # one record of each shard against the image encoded directly
        crop = center_crop_adm(read_rgb(os.path.join(images, paths[index])), fx.IMAGE_SIZE)
        mean, std = model.apply(params, crop[None].astype(np.float32) / 127.5 - 1.0, method="encode")
        example = source[index]
        np.testing.assert_array_equal(example["encoder_image"], crop)
        np.testing.assert_allclose(example["image"], mean[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(example["latent_std"], std[0], rtol=1e-5, atol=1e-6)
        assert example["label"] == int(paths[index].split("/")[0][-1])


def test_corrupt_image_stops_with_its_path_and_a_damaged_shard_is_named(inputs, dataset, tmp_path):
    with pytest.raises(ImageReadError, match=fx.CORRUPT):
        prepare_latents.prepare(fx.prepare_config(*inputs, on_error="stop"), str(tmp_path / "stop"))
    with pytest.raises(ConfigError, match="vae.path"):
        prepare_latents.prepare(fx.prepare_config(inputs[0], str(tmp_path / "none")), str(tmp_path / "x"))
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in os.listdir(dataset[0]):
        (copy / name).write_bytes(open(os.path.join(dataset[0], name), "rb").read())
    shard = copy / read_manifest(str(copy))["shards"][1]["file"]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DatasetError, match=str(shard)):
        LatentRecordSource(str(copy))
    with pytest.raises(ConfigError, match="data.path"):
        diffusion_experiment.build_experiment(fx.train_config(str(tmp_path), "unused", **{"align.method": "none"}))


def test_killed_preparation_resumes_without_duplicates_or_gaps(inputs, dataset, tmp_path):
    directory = str(tmp_path / "resumed")
    # The second encoded batch (inside the second shard) ends the process, through `prepare`'s public callback.
    script = ("import os, signal, sys; from tests.experiments.latent_fixtures import prepare_config; "
              "from jaxrep.experiments.prepare_latents import prepare; batches = []; "
              "stop = lambda: batches.append(1) or (len(batches) == 2 and os.kill(os.getpid(), signal.SIGKILL)); "
              "prepare(prepare_config(sys.argv[1], sys.argv[2]), sys.argv[3], after_batch=stop)")
    command = [sys.executable, "-c", script, *inputs, directory]
    killed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert os.listdir(directory).count("shard-00000.json") == 1 and "manifest.json" not in os.listdir(directory)
    resumed = prepare_latents.prepare(fx.prepare_config(*inputs), directory)
    assert resumed["written"] == [1, 2]  # the finished shard 0 is not redone
    assert resumed["manifest"]["shards"] == dataset[1]["manifest"]["shards"]  # same bytes: same SHA-256
    with pytest.raises(DatasetError, match="other settings \\(records_per_shard"):
        prepare_latents.prepare(fx.prepare_config(*inputs, records_per_shard=4), directory)


def test_repa_training_on_records_then_decoded_samples_are_scored(run_dir, inputs, tmp_path):
    metrics = [m for m in read_metrics(run_dir) if "loss" in m]
    assert metrics[-1]["step"] == 20 and all(np.isfinite(m["loss"]) and m["align_loss"] < 0 for m in metrics)
    eval_net_dir = str(tmp_path / "eval_net")
    net = EvalNet(factor_sizes=(fx.NUM_CLASSES,), widths=(4, 8), feature_dim=16)
    save_eval_net(eval_net_dir, net, net.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"],
                  image_shape=(16, 16, 3), data_source="latent_records")
    config = fx.sample_config(**{"sample_only": False, "features.eval_net_path": eval_net_dir, "features.batch_size": 8,
                                 "reference.cache_dir": str(tmp_path / "cache"), "output_dir": str(tmp_path / "eval")})
    results = evaluate_experiment.evaluate(config, run_dir, show_progress=False)
    assert np.isfinite(results["fd"]) and results["fd"] > 0 and results["prdc_num_real"] == NUM_GOOD
    with np.load(results["samples_npz"]) as samples:
        assert samples["arr_0"].shape == (12, 16, 16, 3) and samples["arr_0"].dtype == np.uint8
        np.testing.assert_array_equal(samples["arr_1"], np.arange(12) % fx.NUM_CLASSES)
    assert samples_equal_decoded_latents(run_dir, inputs[1], results["samples_npz"])


def samples_equal_decoded_latents(run_dir, vae_dir, npz_path) -> bool:
    """The first sample batch is the SD-VAE decode of the SiT's latents / 0.18215, quantised as REPA does."""
    config = fx.sample_config()
    experiment = diffusion_experiment.build_experiment(
        sample_experiment.sampling_config(sample_experiment.load_run_config(run_dir), config))
    params, _ = sample_experiment.restore_params(experiment, run_dir, -1, use_ema=True)
    latents = jax.jit(diffusion_experiment.make_sampler(experiment.model, experiment.config))(
        params, jnp.arange(8, dtype=jnp.int32) % fx.NUM_CLASSES, jax.random.fold_in(jax.random.key(0), 0))
    model, vae_params = load_autoencoder_kl(vae_dir)
    pixels = np.asarray(model.apply(vae_params, np.asarray(latents) / 0.18215, method="decode"))
    expected = np.floor(np.clip(255 * (pixels + 1) / 2, 0, 255)).astype(np.uint8)
    with np.load(npz_path) as samples:
        mismatch = np.abs(samples["arr_0"][:8].astype(int) - expected.astype(int))
    return mismatch.max() <= 1 and (mismatch > 0).mean() < 0.01  # float rounding at a quantisation edge


def _run_cli(num_processes, inputs, dataset_out, run_dir, samples_out, logs):
    """`train.prepare_latents` on `inputs`, then `train.sample` of `run_dir`, each as `num_processes` processes of a
    local cluster started from the command line (2 CPU devices each); returns each process's two stdouts."""
    images, vae = inputs
    stages = {"prepare": [sys.executable, "-m", "train.prepare_latents",
                          "--config=configs/prepare_latents.py:imagenet256", f"--config.data_dir={images}",
                          f"--config.vae.path={vae}", f"--workdir={dataset_out}", *fx.config_flags(fx.PREPARE_VALUES)],
              "sample": [sys.executable, "-m", "train.sample", "--config=configs/evaluate.py:cpu",
                         f"--workdir={run_dir}", f"--config.output_dir={samples_out}",
                         *fx.config_flags(fx.SAMPLE_VALUES)]}
    stdouts = {}
    for stage, command in stages.items():
        port = free_port()
        processes = start_processes([command + distributed_flags(port, num_processes, i) for i in range(num_processes)],
                                    logs / f"{stage}{num_processes}")
        stdouts[stage] = [out for out, _ in finish_processes(processes, logs / f"{stage}{num_processes}", timeout=600)]
    return stdouts


def test_two_processes_prepare_disjoint_complete_shards_and_sample_the_one_process_npz(inputs, dataset, run_dir,
                                                                                       tmp_path):
    two_processes = _run_cli(2, inputs, tmp_path / "data2", run_dir, tmp_path / "samples2", tmp_path)
    _run_cli(1, inputs, tmp_path / "data1", run_dir, tmp_path / "samples1", tmp_path)
    # Disjoint shares that together make every shard and every sample.
    assert [out.splitlines().count(f"process {i} of 2: wrote shards {shards} of 3")
            for i, (out, shards) in enumerate(zip(two_processes["prepare"], ([0, 2], [1])))] == [1, 1]
    assert [f"process {i} of 2: sampled {count} of 12 images" in out
            for i, (out, count) in enumerate(zip(two_processes["sample"], (8, 4)))] == [True, True]
    two, one = read_manifest(str(tmp_path / "data2")), read_manifest(str(tmp_path / "data1"))
    assert [s["count"] for s in two["shards"]] == [s["count"] for s in one["shards"]] == [8, 7, 3]
    assert two["shards"] == one["shards"]  # the same records, byte for byte
    name = "samples_12x16x16x3.npz"
    with np.load(tmp_path / "samples2" / name) as merged, np.load(tmp_path / "samples1" / name) as single:
        np.testing.assert_array_equal(merged["arr_0"], single["arr_0"])
        np.testing.assert_array_equal(merged["arr_1"], single["arr_1"])
    assert not os.path.exists(tmp_path / "samples2" / "shares")


def test_pipeline_workers_decode_the_same_batches_and_resume_exactly(dataset):
    source = LatentRecordSource(dataset[0], with_images=True)
    keys = ("image", "latent_std", "label", "encoder_image")
    build = lambda workers: make_dataset(source, global_batch_size=4, root_key=jax.random.key(3), keys=keys,  # noqa: E731
                                         process_index=0, process_count=1, num_workers=workers)
    in_process, with_workers = make_iterator(build(0)), make_iterator(build(2))
    for _ in range(5):  # past the end of the first epoch (18 records)
        expected, got = next(in_process), next(with_workers)
        for key in keys:
            np.testing.assert_array_equal(got[key], expected[key])
    state = with_workers.get_state()
    following = next(with_workers)
    resumed = make_iterator(build(2), state)
    np.testing.assert_array_equal(next(resumed)["encoder_image"], following["encoder_image"])
    for iterator in (with_workers, resumed):
        iterator.close()

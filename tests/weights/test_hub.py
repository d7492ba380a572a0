"""Hugging Face names (`hf://<org>/<name>`) resolve from a cache in the hub's layout, built here with random-weight
files and read with `HF_HUB_OFFLINE=1`, through the command line as users run it; a name in no cache fails in one
line that says how to get the files."""

import os
import subprocess
import sys

import pytest

from tests.experiments.latent_fixtures import make_tiny_vae
from tests.extras import import_extra
from tests.helpers import diffusion_cli_args

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_snapshot(cache, repo_id: str) -> str:
    """The snapshot folder of `repo_id` at COMMIT in the hub cache layout, `refs/main` pointing at it."""
    repo = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    with open(os.path.join(repo, "refs", "main"), "w") as file:
        file.write(COMMIT)
    snapshot = os.path.join(repo, "snapshots", COMMIT)
    os.makedirs(snapshot, exist_ok=True)
    return snapshot


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """facebook/dinov2-small (transformers layout, random weights) and stabilityai/sd-vae-ft-ema (a tiny random
    diffusers VAE) in a hub cache."""
    torch, transformers = import_extra("torch", "ref"), import_extra("transformers", "ref")
    cache = str(tmp_path_factory.mktemp("hub"))
    torch.manual_seed(0)
    dinov2 = transformers.Dinov2Model(transformers.Dinov2Config(hidden_size=384, num_hidden_layers=12,
                                                                num_attention_heads=6, image_size=518))
    dinov2.save_pretrained(hub_snapshot(cache, "facebook/dinov2-small"), safe_serialization=True)
    make_tiny_vae(hub_snapshot(cache, "stabilityai/sd-vae-ft-ema"))
    return cache


def offline(cache) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": cache}


def test_an_aligned_run_names_its_dinov2_as_repa_does(hub_cache, tmp_path):
    aligned = {"align.method": "repa", "align.encoder.source": "dinov2", "align.encoder.preset": "S/14",
               "align.encoder.image_size": 56, "align.depth": 1, "align.projector_dim": 16, "total_steps": 1,
               "sample_every": 0}
    run = subprocess.run(diffusion_cli_args(tmp_path / "run", **aligned,
                                            **{"align.encoder.path": "hf://facebook/dinov2-small"}),
                         cwd=REPO, env=offline(hub_cache), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "latest step 1" in run.stdout
    missing = subprocess.run(diffusion_cli_args(tmp_path / "missing", **aligned,
                                                **{"align.encoder.path": "hf://facebook/dinov2-base"}),
                             cwd=REPO, env=offline(hub_cache), capture_output=True, text=True, timeout=600)
    assert missing.returncode == 1
    line = missing.stderr.strip().splitlines()[-1]
    assert line.startswith("error: align.encoder.path: hf://facebook/dinov2-base is not in the Hugging Face cache")
    assert "`hf download facebook/dinov2-base model.safetensors`" in line


def test_the_sd_vae_loads_by_its_hub_name_offline(hub_cache):
    script = ("from jaxrep.weights.autoencoder_kl import load_autoencoder_kl; import chex, sys; "
              "named = load_autoencoder_kl('hf://stabilityai/sd-vae-ft-ema')[1]; "
              "local = load_autoencoder_kl(sys.argv[1])[1]; chex.assert_trees_all_equal(named, local); print('same')")
    local = hub_snapshot(hub_cache, "stabilityai/sd-vae-ft-ema")
    result = subprocess.run([sys.executable, "-c", script, local], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env=offline(hub_cache))
    assert result.returncode == 0 and result.stdout.strip() == "same", result.stderr[-2000:]

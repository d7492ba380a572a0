"""AutoencoderKL: parity with diffusers on random weights, both attention key layouts, the single-file default
architecture, mismatch and unreadable-file errors, the bfloat16 option."""

import functools
import json
import os
import re
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.nn.autoencoder_kl import SD_VAE_FT_MSE_CONFIG, AutoencoderKL
from jaxrep.weights.autoencoder_kl import autoencoder_kl_params_from_state_dict, load_autoencoder_kl
from jaxrep.weights.convert import CheckpointMismatchError, load_state_dict
from tests.extras import import_extra

torch = import_extra("torch", "ref")
diffusers = import_extra("diffusers", "ref")

TINY = dict(block_out_channels=(32, 64), layers_per_block=1, latent_channels=4, norm_num_groups=8)
SIZE, BATCH = 16, 2  # 16 px images, 8 px latents
WEIGHTS = "diffusion_pytorch_model.safetensors"


def _diffusers_vae(block_out_channels, **config):
    blocks = len(block_out_channels)
    return diffusers.AutoencoderKL(block_out_channels=block_out_channels, **config,
                                   down_block_types=("DownEncoderBlock2D",) * blocks,
                                   up_block_types=("UpDecoderBlock2D",) * blocks)


def _randomize(vae):
    """Random values in every parameter (diffusers' init leaves GroupNorm at 1 / 0 and biases at 0)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in vae.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.ndim > 1:
                param.copy_(noise / np.sqrt(param[0].numel()))
            elif "norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.2 * noise)
            else:
                param.copy_(0.2 * noise)
        latent = vae.config.latent_channels  # two log-variance channels far outside [-30, 20]: the clip matters
        vae.quant_conv.bias[latent] += 40.0
        vae.quant_conv.bias[latent + 1] -= 60.0
    return vae.eval()


def _relative_error(actual, expected):
    return float(np.linalg.norm(np.asarray(actual) - expected) / np.linalg.norm(expected))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A random tiny diffusers VAE saved with `save_pretrained`, its posterior and decoding (float32), NHWC."""
    torch.manual_seed(0)
    vae = _randomize(_diffusers_vae(**TINY))
    directory = tmp_path_factory.mktemp("tiny_vae")
    vae.save_pretrained(directory, safe_serialization=True)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)).astype(np.float32)
    latents = rng.normal(size=(BATCH, SIZE // 2, SIZE // 2, 4)).astype(np.float32)
    with torch.no_grad():
        posterior = vae.encode(torch.from_numpy(images).permute(0, 3, 1, 2)).latent_dist
        decoded = vae.decode(torch.from_numpy(latents).permute(0, 3, 1, 2)).sample
    nhwc = lambda tensor: tensor.permute(0, 2, 3, 1).numpy()
    return dict(directory=directory, images=images, latents=latents, mean=nhwc(posterior.mean),
                std=nhwc(posterior.std), decoded=nhwc(decoded))


def _encode_decode(model, params, images, latents):
    encode = jax.jit(functools.partial(model.apply, method="encode"))
    decode = jax.jit(functools.partial(model.apply, method="decode"))
    return (*encode(params, images), decode(params, latents))


def test_matches_diffusers_under_jit(reference):
    model, params = load_autoencoder_kl(reference["directory"])
    assert (model.block_out_channels, model.layers_per_block, model.norm_num_groups) == ((32, 64), 1, 8)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    mean, std, decoded = _encode_decode(model, params, reference["images"], reference["latents"])
    assert mean.shape == std.shape == (BATCH, SIZE // 2, SIZE // 2, 4)
    assert decoded.shape == (BATCH, SIZE, SIZE, 3)
    for name, actual in (("mean", mean), ("std", std), ("decoded", decoded)):
        error = _relative_error(actual, reference[name])
        assert error < 1e-5, f"{name}: relative error {error:.2e}"  # about 1e-6 measured
    np.testing.assert_allclose(std, reference["std"], rtol=1e-4)
    np.testing.assert_allclose(std[..., 0], np.exp(10.0), rtol=1e-6)  # log-variance clipped at 20
    np.testing.assert_allclose(std[..., 1], np.exp(-15.0), rtol=1e-6)  # and at -30


def test_deprecated_attention_names_load_the_same_params(reference, tmp_path):
    state_dict = load_state_dict(reference["directory"] / WEIGHTS)
    old_names = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    renamed = {re.sub(r"\.(to_q|to_k|to_v|to_out\.0)\.", lambda m: f".{old_names[m.group(1)]}.", name): value
               for name, value in state_dict.items()}
    assert sum(".proj_attn." in name or ".query." in name for name in renamed) == 8  # 2 attentions x 2 x (w, b)
    from safetensors.numpy import save_file

    save_file(renamed, tmp_path / WEIGHTS)
    shutil.copy(reference["directory"] / "config.json", tmp_path / "config.json")
    _, params = load_autoencoder_kl(tmp_path)
    _, expected = load_autoencoder_kl(reference["directory"])
    chex.assert_trees_all_equal(params, expected)


def test_single_file_gets_the_sd_vae_ft_mse_architecture(tmp_path):
    """Every diffusers key and shape of the real sd-vae-ft-mse architecture fits the default config."""
    config = {name: SD_VAE_FT_MSE_CONFIG[name] for name in ("block_out_channels", "layers_per_block")}
    with torch.device("meta"):  # shapes only: no 84M-parameter init
        shapes = {name: tuple(value.shape) for name, value in _diffusers_vae(**config).state_dict().items()}
    rng = np.random.default_rng(0)
    state_dict = {name: np.zeros(shape, np.float16) for name, shape in shapes.items()}
    state_dict["encoder.conv_in.weight"] = rng.normal(size=shapes["encoder.conv_in.weight"]).astype(np.float16)
    state_dict["decoder.mid_block.attentions.0.to_q.weight"] = rng.normal(size=(512, 512)).astype(np.float16)
    from safetensors.numpy import save_file

    save_file(state_dict, tmp_path / "sd-vae-ft-mse.safetensors")
    model, params = load_autoencoder_kl(tmp_path / "sd-vae-ft-mse.safetensors")
    assert model == AutoencoderKL(**SD_VAE_FT_MSE_CONFIG)
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == sum(map(np.prod, shapes.values()))
    np.testing.assert_array_equal(params["params"]["encoder"]["conv_in"]["kernel"],
                                  state_dict["encoder.conv_in.weight"].astype(np.float32).transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params["params"]["decoder"]["mid_block"]["attentions_0"]["to_q"]["kernel"],
                                  state_dict["decoder.mid_block.attentions.0.to_q.weight"].astype(np.float32).T)


@pytest.mark.parametrize("case", ["wrong_width", "mis_shaped", "extra", "missing"])
def test_mismatch_names_the_keys(reference, case):
    state_dict = load_state_dict(reference["directory"] / WEIGHTS)
    model = AutoencoderKL(**TINY)
    if case == "wrong_width":
        model = AutoencoderKL(**{**TINY, "block_out_channels": (32, 48)})
        key = "encoder.down_blocks.1.resnets.0.conv1.weight"
    elif case == "mis_shaped":
        key = "decoder.conv_out.weight"
        state_dict[key] = np.zeros((3, 16, 3, 3), np.float32)
    elif case == "extra":
        key = "encoder.mid_block.attentions.0.extra.weight"
        state_dict[key] = np.zeros(4, np.float32)
    else:
        key = "decoder.mid_block.attentions.0.to_v.bias"
        del state_dict[key]
    with pytest.raises(CheckpointMismatchError, match=re.escape(key)):
        autoencoder_kl_params_from_state_dict(state_dict, model)


def test_unreadable_files_name_the_path(reference, tmp_path):
    data = (reference["directory"] / WEIGHTS).read_bytes()
    (tmp_path / WEIGHTS).write_bytes(data[: len(data) // 2])
    shutil.copy(reference["directory"] / "config.json", tmp_path / "config.json")
    with pytest.raises(OSError, match=re.escape(str(tmp_path / WEIGHTS))):
        load_autoencoder_kl(tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load_autoencoder_kl(tmp_path / "nothing.safetensors")
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "act_fn": "gelu"}))
    os.remove(tmp_path / WEIGHTS)
    with pytest.raises(ValueError, match="act_fn"):
        load_autoencoder_kl(tmp_path)


def test_bfloat16_is_close_to_float32(reference):
    model, params = load_autoencoder_kl(reference["directory"], dtype=jnp.bfloat16)
    assert model.dtype == jnp.bfloat16
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    outputs = _encode_decode(model, params, reference["images"], reference["latents"])
    for name, actual in zip(("mean", "std", "decoded"), outputs):
        assert actual.dtype == jnp.float32
        unclipped = (..., slice(2, None)) if name == "std" else ...  # the clipped channels are exact anyway
        error = _relative_error(actual[unclipped], reference[name][unclipped])
        assert error < 3e-2, f"{name}: bfloat16 relative error {error:.2e}"

"""REPA's posterior sampling: z = (mean + std * eps) * scale, fresh per example and step, and its place in the loss."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrep.diffusion.latents import SD_VAE_SCALE, LatentNormalization, clean_input, sample_posterior
from jaxrep.diffusion.objective import make_diffusion_loss
from jaxrep.nn.sit import SiT
from jaxrep.training import example_keys
from jaxrep.weights.autoencoder_kl import load_latent_stats

ROOT = jax.random.key_data(jax.random.key(0))


def test_posterior_samples_have_the_scaled_moments():
    mean = jnp.array([[-1.0, 0.5], [2.0, 0.0]]).reshape(1, 2, 2, 1).repeat(4000, 0)
    std = jnp.array([[0.1, 1.0], [0.5, 2.0]]).reshape(1, 2, 2, 1).repeat(4000, 0)
    z = sample_posterior(mean, std, example_keys(ROOT, jnp.int32(0), 0, 4000), LatentNormalization(0.5))
    np.testing.assert_allclose(z.mean(0), 0.5 * mean[0], atol=4 * 0.5 * 2.0 / np.sqrt(4000))
    np.testing.assert_allclose(z.std(0), 0.5 * std[0], rtol=0.05)


def test_posterior_sample_changes_with_the_step_and_is_the_mean_without_noise():
    mean, std = jnp.ones((2, 2, 2, 4)), jnp.ones((2, 2, 2, 4))
    first = sample_posterior(mean, std, example_keys(ROOT, jnp.int32(0), 0, 2))
    second = sample_posterior(mean, std, example_keys(ROOT, jnp.int32(1), 0, 2))
    assert not np.allclose(first, second)
    keys = example_keys(ROOT, jnp.int32(0), 0, 2)
    np.testing.assert_array_equal(sample_posterior(mean, jnp.zeros_like(std), keys), mean * SD_VAE_SCALE)
    np.testing.assert_array_equal(clean_input({"image": mean}, keys), mean)


def test_loss_on_moments_with_zero_std_equals_the_loss_on_scaled_means():
    model = SiT(input_size=4, patch_size=2, in_channels=4, hidden_size=16, depth=1, num_heads=2, num_classes=3)
    x = jax.random.normal(jax.random.key(1), (3, 4, 4, 4))
    params = {"sit": model.init(jax.random.key(2), x, jnp.zeros((3,)), jnp.zeros((3,), jnp.int32))["params"]}
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(p.size), p.shape), params)
    loss_fn = jax.jit(make_diffusion_loss(model, latent_normalization=LatentNormalization(0.25)))
    labels = jnp.array([0, 1, 2])
    keys = example_keys(ROOT, jnp.int32(3), 0, 3)
    with_moments, _ = loss_fn(params, {"image": x, "latent_std": jnp.zeros_like(x), "label": labels}, keys, 3)
    scaled, _ = loss_fn(params, {"image": 0.25 * x, "label": labels}, keys, 3)
    np.testing.assert_allclose(with_moments, scaled, rtol=1e-6)
    noisy, _ = loss_fn(params, {"image": x, "latent_std": jnp.ones_like(x), "label": labels}, keys, 3)
    assert abs(float(noisy) - float(scaled)) > 1e-4


def test_per_channel_statistics_normalise_and_invert_like_irepa(tmp_path):
    # iREPA's train.py: z = (x - latents_bias) * latents_scale; generate.py decodes z / latents_scale + latents_bias.
    scale, bias = np.array([0.2, 0.3, 0.5, 1.0], np.float32), np.array([0.1, -0.2, 0.0, 0.4], np.float32)
    np.savez(tmp_path / "stats.npz", latents_scale=scale, latents_bias=bias)
    normalization = load_latent_stats(str(tmp_path / "stats.npz"))
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(normalization.normalize(x), (x - bias) * scale, rtol=1e-6)
    np.testing.assert_allclose(normalization.denormalize(normalization.normalize(x)), x, rtol=1e-5, atol=1e-6)
    keys = example_keys(ROOT, jnp.int32(0), 0, 2)
    np.testing.assert_allclose(sample_posterior(jnp.asarray(x), jnp.zeros_like(x), keys, normalization),
                               (x - bias) * scale, rtol=1e-6)

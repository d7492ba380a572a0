"""The conv VAE: shapes, the ELBO against its formula, the importance-weighted NLL against exact values."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrep.nn.vae import (
    ConvVAE,
    bernoulli_log_likelihood,
    elbo_loss,
    gaussian_kl,
    gaussian_log_density,
    importance_weighted_nll,
    make_elbo_loss,
    posterior_samples,
)


def binary_images(key, shape=(4, 64, 64, 1)):
    return jnp.where(jax.random.bernoulli(key, 0.3, shape), 1.0, -1.0)


@pytest.fixture(scope="module")
def vae_and_params():
    vae = ConvVAE(latent_dim=5, channels=(8, 8, 16, 16), hidden_dim=32)
    images = binary_images(jax.random.key(0))
    # An rbg key: the same init, but threefry-based init of conv nets compiles ~5x slower on CPU.
    params = jax.jit(vae.init)(jax.random.key(1, impl="rbg"), images, jax.random.key(2))
    return vae, params, images


def test_shapes_generator_range_and_nll(vae_and_params):
    vae, params, images = vae_and_params

    @jax.jit
    def forward(params, key):
        logits, mean, log_var, z = vae.apply(params, images, key)
        generated = vae.apply(params, z, method="generate")
        decode = lambda latents: vae.apply(params, latents, method="decode")
        nll = importance_weighted_nll(decode, images, mean, log_var, key, num_samples=3)
        return logits, mean, log_var, z, generated, nll

    logits, mean, log_var, z, generated, nll = forward(params, jax.random.key(3))
    assert logits.shape == images.shape and mean.shape == log_var.shape == z.shape == (4, 5)
    assert generated.shape == images.shape and float(generated.min()) >= 0 and float(generated.max()) <= 1
    assert nll.shape == (4,) and np.all(np.isfinite(nll))


def test_elbo_matches_its_formula():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(2, 4, 4, 1)).astype(np.float32)
    images = np.where(rng.uniform(size=(2, 4, 4, 1)) < 0.3, 1.0, -1.0).astype(np.float32)
    mean, log_var = rng.normal(size=(2, 3)).astype(np.float32), np.full((2, 3), -0.5, np.float32)
    probabilities, targets = 1 / (1 + np.exp(-logits)), (images + 1) / 2
    bce = -np.sum(targets * np.log(probabilities) + (1 - targets) * np.log(1 - probabilities), axis=(1, 2, 3))
    kl = -0.5 * np.sum(1 + log_var - mean**2 - np.exp(log_var), axis=-1)
    loss, aux = jax.jit(elbo_loss)(logits, images, mean, log_var)
    np.testing.assert_allclose(loss, np.mean(bce + kl), rtol=1e-5)
    np.testing.assert_allclose(aux["kl"], np.mean(kl), rtol=1e-5)
    zero_kl, log_density = jax.jit(lambda: (gaussian_kl(jnp.zeros((1, 3)), jnp.zeros((1, 3))),
                                            gaussian_log_density(jnp.zeros(2))))()
    assert float(zero_kl[0]) == 0.0
    np.testing.assert_allclose(log_density, -np.log(2 * np.pi), rtol=1e-6)


def test_importance_weighted_nll_is_exact_when_the_weights_are():
    """A decoder that ignores z has p(x) = p(x|z); with q = prior every weight is 1 and the estimate is exact,
    with q != prior it converges to it (upstream's sign error on log p(z) - log q(z) would add 2 KL)."""
    images = binary_images(jax.random.key(5), (3, 8, 8, 1))
    logits = jax.random.normal(jax.random.key(6), (1, 8, 8, 1))
    decode = lambda z: jnp.broadcast_to(logits, (z.shape[0], 8, 8, 1))
    exact = -bernoulli_log_likelihood(jnp.broadcast_to(logits, images.shape), images)
    nll = jax.jit(importance_weighted_nll, static_argnums=0, static_argnames="num_samples")
    prior = nll(decode, images, jnp.zeros((3, 2)), jnp.zeros((3, 2)), jax.random.key(7), num_samples=4)
    np.testing.assert_allclose(prior, exact, rtol=1e-6)
    mean, log_var = jnp.full((3, 2), 0.3), jnp.full((3, 2), 0.3)  # q wider than p: bounded weights
    estimate = nll(decode, images, mean, log_var, jax.random.key(8), num_samples=20000)
    np.testing.assert_allclose(estimate, exact, atol=0.01)


def test_more_importance_samples_tighten_the_bound():
    images = binary_images(jax.random.key(10), (3, 8, 8, 1))
    weights = 2.0 * jax.random.normal(jax.random.key(11), (2, 64))
    decode = lambda z: (z @ weights).reshape(z.shape[0], 8, 8, 1)  # a decoder that depends on z
    mean, log_var = jnp.array([[0.5, -0.2]] * 3), jnp.full((3, 2), -1.0)
    nll = jax.jit(importance_weighted_nll, static_argnums=0, static_argnames="num_samples")
    many = nll(decode, images, mean, log_var, jax.random.key(12), num_samples=256)
    keys = jax.random.split(jax.random.key(13), 64)
    single = jnp.mean(jax.jit(jax.vmap(lambda k: importance_weighted_nll(decode, images, mean, log_var, k,
                                                                         num_samples=1)))(keys), axis=0)
    assert np.all(many < single - 1.0), (many, single)  # S = 1 is the (sampled) negative ELBO


def test_a_few_adam_steps_lower_the_elbo(vae_and_params):
    vae, params, images = vae_and_params
    optimizer = optax.adam(3e-3)

    @jax.jit
    def step(params, opt_state, key):
        def loss_fn(p):
            logits, mean, log_var, _ = vae.apply(p, images, key)
            return elbo_loss(logits, images, mean, log_var)[0]

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = optimizer.init(params)
    losses = []
    for i in range(8):
        params, opt_state, loss = step(params, opt_state, jax.random.key(i))
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 20.0, losses  # nats per image; 4096 ln 2 ~ 2839 at the start


def test_make_elbo_loss_is_elbo_loss_at_the_example_keys_posterior_sample(vae_and_params):
    vae, params, images = vae_and_params
    keys = jax.random.split(jax.random.key(3), images.shape[0])
    loss, metrics = jax.jit(make_elbo_loss(vae))({"vae": params["params"]}, {"image": images}, keys, 0)
    mean, log_var = vae.apply(params, images, method="encode")
    z = mean + jnp.exp(0.5 * log_var) * jax.vmap(lambda k, m: jax.random.normal(k, m.shape))(keys, mean)
    logits = vae.apply(params, z, method="decode")
    expected = np.mean(-bernoulli_log_likelihood(logits, images) + gaussian_kl(mean, log_var))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["elbo"], loss)
    np.testing.assert_allclose(posterior_samples(vae, params["params"], images, keys)[2], z, rtol=1e-5, atol=1e-6)

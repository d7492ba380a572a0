"""jaxrep.traversal.objective: the traversal and from-scratch VAE train-step losses against their closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.nn.vae import ConvVAE
from jaxrep.traversal import LinearDirections, MLPPotentials, PairClassifier
from jaxrep.traversal.objective import FlowTerm, make_scratch_vae_loss, make_traversal_loss

K, DIM, BATCH = 3, 4, 4
PROJECTION = jax.random.normal(jax.random.key(9), (DIM, 64 * 64))


def generate(z):
    return jax.nn.sigmoid(z @ PROJECTION).reshape(z.shape[0], 64, 64, 1)


def zero_classifier():
    classifier = PairClassifier(num_classes=K, stochastic_logits=False)
    images = jnp.zeros((1, 64, 64, 1))
    params = jax.jit(classifier.init)(jax.random.key(0, impl="rbg"), images, images)["params"]
    return classifier, jax.tree.map(jnp.zeros_like, params)


@pytest.mark.parametrize("family", [LinearDirections(num_potentials=K, latent_dim=DIM),
                                    MLPPotentials(num_potentials=K, latent_dim=DIM)], ids=["linear", "potential"])
def test_traversal_loss_at_a_zero_classifier_is_log_k_plus_the_flow(family):
    classifier, classifier_params = zero_classifier()
    flow = FlowTerm(num_steps=3, weight=0.5)
    loss_fn = jax.jit(make_traversal_loss(family, classifier, generate, flow, classifier_weight=2.0))
    params = {"family": family.init(jax.random.key(1)), "classifier": classifier_params}
    batch = {"z": jax.random.normal(jax.random.key(2), (BATCH, DIM))}
    loss, metrics = loss_fn(params, batch, jax.random.split(jax.random.key(3), BATCH), 0)
    # Zero logits: CE = log K whatever the pair.
    np.testing.assert_allclose(metrics["classification"], np.log(K), rtol=1e-6)
    flow_term = 0.5 * metrics["flow"] if isinstance(family, MLPPotentials) else 0.0
    assert ("flow" in metrics) == isinstance(family, MLPPotentials)
    np.testing.assert_allclose(loss, 2.0 * np.log(K) + flow_term, rtol=1e-5)


def test_scratch_vae_loss_is_the_sum_of_its_terms():
    vae = ConvVAE(latent_dim=DIM, channels=(4, 4, 8, 8), hidden_dim=16)
    potentials = MLPPotentials(num_potentials=K, latent_dim=DIM)
    images = jnp.where(jax.random.bernoulli(jax.random.key(4), 0.3, (3, BATCH, 64, 64, 1)), 1.0, -1.0)
    params = {"vae": jax.jit(vae.init)(jax.random.key(5, impl="rbg"), images[0], jax.random.key(6))["params"],
              "potentials": potentials.init(jax.random.key(7))}
    batch = {"image": images[0], "image_t": images[1], "image_next": images[2],
             "potential": jnp.arange(BATCH) % K, "time": jnp.zeros((BATCH,), jnp.int32)}
    loss_fn = jax.jit(make_scratch_vae_loss(vae, potentials, FlowTerm(num_steps=3, weight=0.25)))
    loss, metrics = loss_fn(params, batch, jax.random.split(jax.random.key(8), BATCH), 0)
    expected = metrics["elbo"] + metrics["shifted_elbo"] + 0.25 * metrics["flow"] + metrics["matching"]
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["elbo"], metrics["reconstruction"] + metrics["kl"], rtol=1e-5)
    np.testing.assert_allclose(metrics["flow"], metrics["ic"] + metrics["pde"] - metrics["variation"], rtol=1e-4,
                               atol=1e-6)

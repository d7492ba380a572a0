"""The pair classifier on dSprites-sized inputs, and the linear baseline trained through it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.traversal import LinearDirections, PairClassifier, potential_flow_loss, traversal_classifier_loss

K, DIM = 3, 4


@pytest.fixture(scope="module")
def classifier_and_params():
    classifier = PairClassifier(num_classes=K, stochastic_logits=True)
    images = jnp.zeros((2, 64, 64, 1))
    # An rbg key: the same init, but threefry-based init of conv nets compiles several times slower on CPU.
    return classifier, jax.jit(classifier.init)(jax.random.key(0, impl="rbg"), images, images)


def test_stochastic_pair_classifier(classifier_and_params):
    classifier, params = classifier_and_params
    assert set(params["params"]) >= {"conv_0", "conv_1", "conv_2", "hidden", "logits_mean", "logits_log_var"}
    assert params["params"]["conv_0"]["kernel"].shape == (5, 5, 2, 6)  # the pair is stacked on channels
    first = jax.random.uniform(jax.random.key(1), (2, 64, 64, 1))
    second = jax.random.uniform(jax.random.key(2), (2, 64, 64, 1))
    apply = jax.jit(classifier.apply)
    mean = apply(params, first, second)
    assert mean.shape == (2, K) and np.all(np.isfinite(mean))
    assert not np.allclose(apply(params, second, first), mean)  # the order of the pair matters
    samples = jnp.stack([apply(params, first, second, jax.random.key(i)) for i in range(3)])
    assert not np.allclose(samples[0], samples[1])
    np.testing.assert_allclose(apply(params, first, second, jax.random.key(0)), samples[0])


def test_linear_baseline_trains_through_the_same_classifier(classifier_and_params):
    classifier, classifier_params = classifier_and_params
    family = LinearDirections(num_potentials=K, latent_dim=DIM)
    params = family.init(jax.random.key(3))
    pixels = jax.random.normal(jax.random.key(4), (DIM, 64 * 64))
    generator = lambda z: jax.nn.sigmoid(z @ pixels).reshape(z.shape[0], 64, 64, 1)

    def classifier_loss(params, classifier_params, k, z0, key):
        _, aux = potential_flow_loss(family.potential(params, k), 1.0, z0, generator, 0, num_steps=2)
        logits = classifier.apply(classifier_params, generator(aux["latent1"]), generator(aux["latent2"]), key)
        return traversal_classifier_loss(logits, k)[0]

    z0 = jax.random.normal(jax.random.key(5), (2, DIM))
    grads = jax.jit(jax.grad(classifier_loss, argnums=(0, 1)))(params, classifier_params, 1, z0, jax.random.key(6))
    assert float(jnp.abs(grads[0]["directions"][1]).sum()) > 0
    assert float(jnp.abs(grads[0]["directions"][jnp.array([0, 2])]).sum()) == 0.0
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))

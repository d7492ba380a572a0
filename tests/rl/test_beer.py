"""jaxrep.rl.beer: hand-computed values, the official code's formula, gradients, guards, the clean form."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest

from jaxrep.rl.beer import beer_loss, beer_loss_and_stats, beer_terms

# Three transitions, d = 2, gamma = 0.5, ||w|| = 1 (worked by hand):
#  row 0: cos = 1,               bound = (1 + 0.25 - 1) / (2 * 0.5 * 1 * 1) = 0.25  -> violation 0.75
#  row 1: cos([3,4],[4,3]) = .96, bound = (25 + 0.25 * 4 - 4) / (2 * 0.5 * 5 * 5) = 0.88 -> violation 0.08
#  row 2: cos = 0,               bound = (1 + 0.25 - 0) / (2 * 0.5 * 1 * 1) = 1.25  -> inactive
PHI = np.array([[1.0, 0.0], [3.0, 4.0], [1.0, 0.0]], np.float32)
PHI_NEXT = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0]], np.float32)
PHI_NEXT_TARGET = np.array([[1.0, 0.0], [4.0, 3.0], [0.0, 1.0]], np.float32)
REWARD = np.array([1.0, 2.0, 0.0], np.float32)
HEAD = np.array([[1.0], [0.0]], np.float32)


class BeerValuesTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_official_form_hand_computed(self):
        loss_and_stats = self.variant(lambda *args: beer_loss_and_stats(*args, gamma=0.5, coef=3.0))
        loss, stats = loss_and_stats(PHI, PHI_NEXT, PHI_NEXT_TARGET, REWARD, HEAD)
        np.testing.assert_allclose(loss, 3.0 * (0.75 + 0.08) / 3, rtol=1e-5)
        np.testing.assert_allclose(stats["active_fraction"], 2 / 3, rtol=1e-6)
        np.testing.assert_allclose(stats["cosine"], (1 + 0.96 + 0) / 3, rtol=1e-5)
        np.testing.assert_allclose(stats["bound"], (0.25 + 0.88 + 1.25) / 3, rtol=1e-5)
        cosine, bound = self.variant(lambda *args: beer_terms(*args, gamma=0.5))(
            PHI, PHI_NEXT, PHI_NEXT_TARGET, REWARD, HEAD)
        np.testing.assert_allclose(cosine, [1.0, 0.96, 0.0], atol=1e-6)
        np.testing.assert_allclose(bound, [0.25, 0.88, 1.25], rtol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_clean_form_uses_one_feature_source(self):
        # phi' = PHI_NEXT everywhere: row 0 as above (0.75); row 1 cos = 0.8 < bound 22/10; row 2 cos = 1 < 1.25.
        loss_fn = self.variant(lambda *args: beer_loss(*args, gamma=0.5, coef=3.0, form="clean"))
        np.testing.assert_allclose(loss_fn(PHI, PHI_NEXT, PHI_NEXT_TARGET, REWARD, HEAD), 0.75, rtol=1e-5)
        np.testing.assert_allclose(loss_fn(PHI, PHI_NEXT, 100.0 * PHI_NEXT_TARGET + 1, REWARD, HEAD), 0.75, rtol=1e-5)


def official_numpy(phi, phi_next, phi_next_target, reward, head, beta=1e-3):
    """BEER.py `train`, transcribed to numpy (gamma fixed at 0.99, torch's cosine with eps = 1e-6)."""
    norm = lambda x: np.linalg.norm(x, axis=1, keepdims=True)
    bound = (0.5 / 0.99) * (norm(phi) ** 2 + 0.99**2 * norm(phi_next) ** 2 - reward[:, None] ** 2 / np.sum(head**2))
    bound = bound / (norm(phi) * norm(phi_next_target))
    cosine = np.sum(phi * phi_next_target, 1) / (np.maximum(norm(phi)[:, 0], 1e-6) * np.maximum(norm(phi_next_target)[:, 0], 1e-6))
    return beta * np.mean(np.maximum(cosine - bound[:, 0], 0.0))


def test_matches_the_official_formula_on_random_features():
    rng = np.random.default_rng(0)
    # Post-ReLU-like features with a large shared component, so a good share of rows violate the bound.
    common = rng.uniform(0, 1, (1, 32))
    phi = np.maximum(common + 0.2 * rng.normal(size=(64, 32)), 0).astype(np.float64)
    phi_next = np.maximum(common + 0.2 * rng.normal(size=(64, 32)), 0)
    phi_next_target = np.maximum(common + 0.2 * rng.normal(size=(64, 32)), 0)
    reward = rng.uniform(-3, 3, 64)
    head = rng.normal(size=(32, 1)) * 0.3
    expected = official_numpy(phi, phi_next, phi_next_target, reward, head)
    loss, stats = beer_loss_and_stats(*(jnp.asarray(x, jnp.float32) for x in (phi, phi_next, phi_next_target, reward, head)))
    assert 0.1 < float(stats["active_fraction"]) < 0.9  # the hinge is exercised on both sides
    np.testing.assert_allclose(loss, expected, rtol=1e-4)


def _grads(phi, phi_next, phi_next_target, reward, head, **kwargs):
    return jax.grad(lambda *args: beer_loss(*args, **kwargs), argnums=(0, 1, 2, 3, 4))(
        phi, phi_next, phi_next_target, reward, head)


def test_gradient_flows_only_through_phi_and_matches_the_cosine_derivative():
    coef = 3.0
    g_phi, *others = _grads(PHI, PHI_NEXT, PHI_NEXT_TARGET, REWARD, HEAD, gamma=0.5, coef=coef)
    for g in others:
        np.testing.assert_array_equal(g, np.zeros_like(g))
    # d cos(p, t)/dp = t / (|p||t|) - cos * p / |p|^2 on active rows (0 and 1), zero on row 2; scaled by coef / B.
    expected = np.zeros_like(PHI)
    for row in (0, 1):
        p, t = PHI[row], PHI_NEXT_TARGET[row]
        cos = p @ t / (np.linalg.norm(p) * np.linalg.norm(t))
        expected[row] = coef / 3 * (t / (np.linalg.norm(p) * np.linalg.norm(t)) - cos * p / (p @ p))
    np.testing.assert_allclose(g_phi, expected, atol=1e-6)
    assert np.any(expected != 0)


def test_zero_loss_and_zero_gradient_when_every_cosine_is_under_its_bound():
    rng = np.random.default_rng(1)
    phi = rng.uniform(0, 1, (16, 8)).astype(np.float32)
    phi_next = 10.0 * rng.uniform(0, 1, (16, 8)).astype(np.float32)  # large ||phi'|| raises the bound above 1
    reward = np.zeros(16, np.float32)
    cosine, bound = beer_terms(phi, phi_next, phi_next, reward, HEAD.repeat(4, 0))
    assert np.all(np.asarray(cosine) < np.asarray(bound))
    assert float(beer_loss(phi, phi_next, phi_next, reward, HEAD.repeat(4, 0))) == 0.0
    for g in _grads(phi, phi_next, phi_next, reward, HEAD.repeat(4, 0)):
        np.testing.assert_array_equal(g, np.zeros_like(g))


@pytest.mark.parametrize("zero", ["phi", "phi_next_target", "head"])
def test_zero_norms_give_finite_loss_and_gradients(zero):
    inputs = dict(phi=PHI.copy(), phi_next=PHI_NEXT, phi_next_target=PHI_NEXT_TARGET.copy(), reward=REWARD, head=HEAD.copy())
    if zero == "head":
        inputs["head"][:] = 0.0
    else:
        inputs[zero][0] = 0.0  # one dead-ReLU row
    args = tuple(inputs.values())
    loss = beer_loss(*args, gamma=0.5, coef=3.0)
    assert np.isfinite(loss)
    for g in _grads(*args, gamma=0.5, coef=3.0):
        assert np.all(np.isfinite(g))
    if zero != "head":  # the degenerate row is inactive (bound = +inf), the others unchanged
        _, bound = beer_terms(*args, gamma=0.5)
        assert np.isinf(bound[0]) and bound[0] > 0
        np.testing.assert_allclose(loss, 3.0 * 0.08 / 3, rtol=1e-5)


def test_shape_checks():
    with pytest.raises(AssertionError, match=r"assert_rank failed.*input 3 has rank 2"):
        beer_loss(PHI, PHI_NEXT, PHI_NEXT_TARGET, REWARD[:, None], HEAD)
    with pytest.raises(ValueError, match="form"):
        beer_loss(PHI, PHI_NEXT, PHI_NEXT_TARGET, REWARD, HEAD, form="paper")


def test_exported_from_losses():
    from jaxrep import losses

    assert losses.beer_loss is beer_loss and "beer_loss" in losses.__all__


if __name__ == "__main__":
    absltest.main()

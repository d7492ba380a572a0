import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from jaxrep.diffusion import gvp_interpolant, linear_interpolant, sample_time
from jaxrep.losses import flow_matching_loss


class InterpolantTest(chex.TestCase):
    """The interpolants' closed forms and derivatives, with and without jit."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_linear_interpolant_endpoints_and_velocity(self):
        x = jax.random.normal(jax.random.key(0), (3, 4, 4, 2))
        noise = jax.random.normal(jax.random.key(1), x.shape)
        x_t, v = self.variant(linear_interpolant)(x, noise, jnp.array([0.0, 1.0, 0.25]))
        chex.assert_trees_all_close((x_t[0], x_t[1], x_t[2], v),
                                    (x[0], noise[1], 0.75 * x[2] + 0.25 * noise[2], noise - x), rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("linear", linear_interpolant), ("gvp", gvp_interpolant))
    def test_velocity_is_time_derivative(self, interpolant):
        x = jax.random.normal(jax.random.key(0), (2, 5))
        noise = jax.random.normal(jax.random.key(1), (2, 5))
        t = jnp.array([0.3, 0.8])
        _, v = self.variant(interpolant)(x, noise, t)
        dxdt = jax.jvp(lambda tt: interpolant(x, noise, tt)[0], (t,), (jnp.ones_like(t),))[1]
        chex.assert_trees_all_close(v, dxdt, rtol=1e-5, atol=1e-6)


def test_gvp_is_variance_preserving():
    x, noise = jnp.ones((1, 1)), jnp.ones((1, 1))
    t = jnp.array([0.37])
    x_t, _ = gvp_interpolant(x, noise, t)
    alpha, sigma = np.cos(np.pi * 0.37 / 2), np.sin(np.pi * 0.37 / 2)
    np.testing.assert_allclose(x_t[0, 0], alpha + sigma, rtol=1e-6)
    np.testing.assert_allclose(alpha**2 + sigma**2, 1.0)


@pytest.mark.parametrize("weighting", ["uniform", "lognormal"])
def test_sample_time_in_unit_interval(weighting):
    t = sample_time(jax.random.key(0), (4096,), weighting)
    assert t.shape == (4096,) and float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    if weighting == "lognormal":  # median of sigma/(1+sigma) with log sigma ~ N(0,1) is 1/2
        assert abs(float(jnp.median(t)) - 0.5) < 0.03


def test_flow_matching_loss_hand_computed():
    v_pred = jnp.array([[1.0, 2.0], [0.0, 0.0]])
    v_target = jnp.array([[0.0, 0.0], [3.0, 1.0]])
    # per-sample means: (1 + 4) / 2 = 2.5 and (9 + 1) / 2 = 5; batch mean 3.75
    np.testing.assert_allclose(flow_matching_loss(v_pred, v_target), 3.75)
    with pytest.raises(AssertionError, match=r"different shapes: \[\(2, 2\), \(1, 2\)\]"):
        flow_matching_loss(v_pred, v_target[:1])


@pytest.mark.parametrize("path", ["linear", "gvp"])
def test_lognormal_time_has_lognormal_noise_to_signal_ratio(path):
    # REPA's SILoss: sigma_t / alpha_t = exp(N(0, 1)) on either path (t = s/(1+s) linear, 2/pi atan(s) cosine).
    t = np.asarray(sample_time(jax.random.key(0), (65536,), "lognormal", path), np.float64)
    ratio = t / (1 - t) if path == "linear" else np.tan(np.pi * t / 2)
    log_ratio = np.log(ratio)
    assert abs(log_ratio.mean()) < 0.02 and abs(log_ratio.std() - 1.0) < 0.02
    np.testing.assert_allclose(np.quantile(log_ratio, [0.1587, 0.5, 0.8413]), [-1.0, 0.0, 1.0], atol=0.03)
    # the same key gives the same ratio on both paths (the weighting is over noise levels, not over t)
    t_linear = np.asarray(sample_time(jax.random.key(0), (65536,), "lognormal", "linear"), np.float64)
    np.testing.assert_allclose(ratio, t_linear / (1 - t_linear), rtol=2e-3)

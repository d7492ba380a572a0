"""`jaxrep.losses` is importable for its pure losses alone: no training, checkpoint, data or environment stack."""

import subprocess
import sys

import chex
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized

PUBLIC = ("actor_loss", "beer_loss", "coverage_loss", "critic_loss", "elbo_loss", "erw_warmup_loss",
          "factor_classification_loss", "flow_matching_loss", "importance_weighted_nll", "potential_flow_loss",
          "repa_loss", "sequence_matching_loss", "traversal_classifier_loss")
HEAVY = ("orbax", "tensorstore", "sklearn", "matplotlib", "grain", "dm_control", "torch", "tensorboardX")


def test_importing_the_losses_loads_no_heavy_dependency():
    probe = ("import sys, jaxrep.losses as losses; "
             f"assert all(callable(getattr(losses, name)) for name in {PUBLIC!r}); "
             f"assert set(losses.__all__) >= set({PUBLIC!r}); "
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_lazy_package_names_still_resolve():
    from jaxrep.metrics import linear_probe_accuracy, mig
    from jaxrep.rl import DDPG, beer_loss

    assert all(callable(f) for f in (linear_probe_accuracy, mig, beer_loss)) and DDPG.__name__ == "DDPG"


def _potential(z, t):
    """u(z, t) = (1 + t) sum(sin z) + 0.1 |z|^2: a smooth potential with a closed-form gradient."""
    return (1.0 + t) * jnp.sum(jnp.sin(z)) + 0.1 * jnp.sum(z**2)


def _generator(z):
    return jnp.tanh(z @ jnp.linspace(-1.0, 1.0, z.shape[-1] * 16).reshape(z.shape[-1], 16)).reshape(-1, 4, 4, 1)


B = 6
_rng = np.random.default_rng(0)


def _normal(*shape):
    return jnp.asarray(_rng.normal(size=shape), jnp.float32)


HEAD_KERNEL = _normal(4, 1)
# Every loss of `jaxrep.losses` with a per-example form. name: (arrays, call(loss_fn, *arrays)); every array's batch
# axis is 0 but the PDE rollout's (T, B, d).
CASES = {
    "repa_loss": ((_normal(B, 5, 8), _normal(B, 5, 8)), lambda f, *a: f(*a)),
    "erw_warmup_loss": ((_normal(B, 5, 8), _normal(B, 5, 8)), lambda f, *a: f(*a)),
    "flow_matching_loss": ((_normal(B, 4, 4, 3), _normal(B, 4, 4, 3)), lambda f, *a: f(*a)),
    "elbo_loss": ((_normal(B, 4, 4, 1), jnp.tanh(_normal(B, 4, 4, 1)), _normal(B, 3), _normal(B, 3)),
                  lambda f, *a: f(*a)),
    "critic_loss": ((_normal(B), _normal(B), jnp.asarray([1.0, 1, 0, 1, 1, 0]), _normal(B)),
                    lambda f, *a: f(*a, discount=0.99)),
    "actor_loss": ((_normal(B),), lambda f, *a: f(*a)),
    "beer_loss": ((_normal(B, 4), _normal(B, 4), _normal(B, 4), _normal(B)),
                  lambda f, *a: f(*a, HEAD_KERNEL, coef=0.5)),
    "factor_classification_loss": ((_normal(B, 3), _normal(B, 5, 4), jnp.asarray(_rng.integers(0, 3, (B, 2)))),
                                   lambda f, head, token_head, factors: f([head, token_head], factors)),
    "coverage_loss": ((_normal(B, 4), jnp.tanh(_normal(B, 8, 8, 3))), lambda f, *a: f(*a)),
    "initial_condition_loss": ((_normal(B, 3),), lambda f, z0: f(_potential, z0)),
    "pde_residual_loss": ((_normal(4, B, 3),), lambda f, latents: f(_potential, latents, speed=0.7)),  # (T, B, d)
    "variation_loss": ((_normal(B, 3), _normal(B, 3)), lambda f, *a: f(_generator, *a)),
    "potential_flow_loss": ((_normal(B, 3),), lambda f, z0: f(_potential, 0.7, z0, _generator, 1, num_steps=4)),
    "traversal_classifier_loss": ((_normal(B, 3),), lambda f, logits: f(logits, 2)),
    "sequence_matching_loss": ((_normal(B, 3), _normal(B, 3), _normal(B, 3), _normal(B, 3)), lambda f, *a: f(*a)),
}


def _loss_value(output):
    return output[0] if isinstance(output, tuple) else output


def test_every_loss_has_a_per_example_form():
    from jaxrep import losses

    means = {name for name in losses.__all__ if name.endswith("_loss")}
    assert means == set(CASES)
    assert all(f"{name}_per_example" in losses.__all__ for name in means)


class PerExampleLossesTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*((name, name) for name in sorted(CASES)))
    def test_the_per_example_form_is_each_example_alone_and_averages_to_the_loss(self, name):
        from jaxrep import losses

        arrays, call = CASES[name]
        per_example = self.variant(lambda *a: _loss_value(call(getattr(losses, f"{name}_per_example"), *a)))
        mean = self.variant(lambda *a: _loss_value(call(getattr(losses, name), *a)))
        values = per_example(*arrays)
        chex.assert_shape(values, (B,))
        chex.assert_trees_all_close(jnp.mean(values), mean(*arrays), rtol=1e-6, atol=1e-7)
        # example b's value is the loss of a batch of b alone: the form neither mixes nor misweighs examples
        axis = 1 if name == "pde_residual_loss" else 0
        alone = [mean(*(jnp.take(array, jnp.asarray([b]), axis=axis) for array in arrays)) for b in range(B)]
        chex.assert_trees_all_close(values, jnp.stack(alone), rtol=1e-5, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_the_official_erw_warmup_loss_is_the_last_sample_over_the_batch(self):
        from jaxrep.losses import erw_warmup_loss_per_example, repa_loss

        projected, target = CASES["erw_warmup_loss"][0]
        values = self.variant(lambda p, t: erw_warmup_loss_per_example(p, t, official_last_sample=True))(projected,
                                                                                                      target)
        chex.assert_trees_all_close(values[:-1], jnp.zeros(B - 1))
        chex.assert_trees_all_close(jnp.mean(values), repa_loss(projected[-1:], target[-1:]) / B, rtol=1e-6)

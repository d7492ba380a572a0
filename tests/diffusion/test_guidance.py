"""Guidance decisions of the samplers against a NumPy float64 transcription of REPA's `euler_sampler` and
`euler_maruyama_sampler` (github sihyun-yu/REPA, samplers.py): which model calls run on the doubled batch.

The model records every call it receives (its float32 time and whether the batch was doubled); the reference
lists the calls REPA makes: grid from a float64 linspace, guidance iff cfg_scale > 1 and low <= t_cur <= high,
the Heun corrector at t_next reusing the decision taken at t_cur.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.diffusion import classifier_free_guidance, ode_sample, sde_sample
from jaxrep.diffusion.samplers import float64_linspace
from tests.extras import import_extra

NULL_LABEL = 5


def repa_grid(start, stop, num):
    torch = import_extra("torch", "ref")
    return torch.linspace(start, stop, num, dtype=torch.float64).numpy()


def repa_calls(grid, *, scale, low, high, heun):
    """[(t as the model sees it, doubled batch?)] in REPA's order; grid (S + 1,) float64."""
    calls = []
    for i in range(len(grid) - 1):
        guided = bool(scale > 1.0 and low <= grid[i] <= high)
        calls.append((np.float32(grid[i]), guided))
        if heun and i < len(grid) - 2:
            calls.append((np.float32(grid[i + 1]), guided))
    return calls


def recorded_calls(sample, *, scale, interval, batch=2):
    """Runs `sample(velocity)` under jit with a recording model; returns its calls in order."""
    calls = []

    def record(t, doubled):
        calls.append((np.float32(t), doubled))

    def model_fn(x, t, labels):
        jax.debug.callback(functools.partial(record, doubled=x.shape[0] == 2 * batch), t[0], ordered=True)
        return -0.1 * x + jnp.where(labels == NULL_LABEL, 0.0, 1.0)[:, None]

    labels = jnp.arange(batch)
    velocity = classifier_free_guidance(model_fn, labels, null_label=NULL_LABEL, scale=scale, interval=interval)
    jax.block_until_ready(jax.jit(lambda x: sample(velocity, x))(jnp.ones((batch, 3))))
    jax.effects_barrier()
    return calls


def assert_same_calls(calls, expected):
    guided = [i for i, (_, doubled) in enumerate(calls) if doubled]
    assert guided == [i for i, (_, doubled) in enumerate(expected) if doubled]  # the guided evaluations
    assert [t for t, _ in calls] == [t for t, _ in expected]  # and the float32 times the model sees


@pytest.mark.parametrize("num_steps", [50, 100, 110, 250])
@pytest.mark.parametrize("interval", [(0.0, 0.7), (0.3, 0.7), (0.45, 0.75)])
@pytest.mark.parametrize("method", ["euler", "heun"])
def test_ode_guided_steps_follow_repa_rule(num_steps, interval, method):
    calls = recorded_calls(lambda v, x: ode_sample(v, x, num_steps=num_steps, method=method),
                           scale=1.8, interval=interval)
    expected = repa_calls(repa_grid(1.0, 0.0, num_steps + 1), scale=1.8, low=interval[0], high=interval[1],
                          heun=method == "heun")
    assert_same_calls(calls, expected)


@pytest.mark.parametrize("num_steps", [50, 144, 250])
def test_sde_guided_steps_follow_repa_rule(num_steps):
    calls = recorded_calls(lambda v, x: sde_sample(v, x, jax.random.key(0), num_steps=num_steps),
                           scale=1.8, interval=(0.0, 0.7))
    grid = np.append(repa_grid(1.0, 0.04, num_steps), 0.0)
    assert_same_calls(calls, repa_calls(grid, scale=1.8, low=0.0, high=0.7, heun=False))


def test_heun_corrector_reuses_predictor_decision_at_interval_edges():
    # 10 steps, interval [0.45, 0.75]: the step 0.8 -> 0.7 starts outside, so its corrector at 0.7 (inside)
    # is not guided; the step 0.5 -> 0.4 starts inside, so its corrector at 0.4 (outside) is guided.
    calls = recorded_calls(lambda v, x: ode_sample(v, x, num_steps=10, method="heun"), scale=1.8,
                           interval=(0.45, 0.75))
    guided_pairs = [(float(t), doubled) for t, doubled in calls if abs(t - 0.7) < 1e-6 or abs(t - 0.4) < 1e-6]
    np.testing.assert_allclose([t for t, _ in guided_pairs], [0.7, 0.7, 0.4, 0.4], rtol=1e-6)
    # order: corrector of 0.8 -> 0.7, predictor of 0.7 -> 0.6, corrector of 0.5 -> 0.4, predictor of 0.4 -> 0.3
    assert [doubled for _, doubled in guided_pairs] == [False, True, True, False]


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.0])
def test_scale_at_most_one_never_guides(scale):
    calls = recorded_calls(lambda v, x: ode_sample(v, x, num_steps=8, method="heun"), scale=scale,
                           interval=(0.0, 1.0))
    assert len(calls) == 15 and not any(doubled for _, doubled in calls)


def test_float64_linspace_is_torch_linspace_bit_for_bit():
    for num in range(1, 400):
        for start, stop in ((1.0, 0.0), (1.0, 0.04)):
            np.testing.assert_array_equal(float64_linspace(start, stop, num), repa_grid(start, stop, num))

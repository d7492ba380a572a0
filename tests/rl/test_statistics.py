"""rliable aggregates over (runs, tasks): the IQM is the 25 %-trimmed mean of all scores (scipy), intervals
contain their point, a clearly better method wins with probability ~1, and the plots are written."""

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from jaxrep.rl import (
    aggregate_intervals,
    higher_interval,
    learning_curve_bands,
    normalize_returns,
    performance_profiles,
    probability_of_improvement,
)
from jaxrep.run.rl_figures import plot_aggregates, plot_learning_curves, plot_profiles


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(0)
    returns = {"ddpg": rng.uniform(100, 500, (5, 4)), "beer": rng.uniform(600, 900, (5, 4))}
    return normalize_returns(returns)


def test_normalisation_divides_by_the_dmc_maximum_and_checks_the_layout(scores):
    np.testing.assert_allclose(normalize_returns({"a": np.full((2, 3), 500.0)})["a"], 0.5)
    with pytest.raises(ValueError, match=r"\(runs, tasks\)"):
        normalize_returns({"a": np.ones((2, 3)), "b": np.ones((2, 4))})


def test_iqm_and_mean_match_their_definitions_and_intervals_contain_them(scores):
    intervals = aggregate_intervals(scores, reps=500)
    for method, values in scores.items():
        iqm, low, high = intervals[method]["iqm"]
        assert iqm == pytest.approx(stats.trim_mean(values.ravel(), 0.25))
        assert low <= iqm <= high
        mean, low, high = intervals[method]["mean"]
        assert mean == pytest.approx(values.mean()) and low <= mean <= high
    assert intervals["beer"]["iqm"][1] > intervals["ddpg"]["iqm"][2]  # separated by construction
    assert higher_interval({m: intervals[m]["iqm"] for m in intervals}) == "beer"


def test_intervals_are_reproducible_and_leave_numpys_global_generator_alone(scores):
    np.random.seed(7)
    expected_next = np.random.RandomState(7).random_sample()
    first = aggregate_intervals(scores, reps=300)
    assert aggregate_intervals(scores, reps=300) == first  # rliable draws from np.random: seeded per call
    assert aggregate_intervals(scores, reps=300, seed=1) != first
    rng = np.random.default_rng(1)
    mixed = {"x": rng.uniform(0, 1, (5, 3)), "y": rng.uniform(0, 1, (5, 3))}  # overlapping: a non-trivial interval
    assert probability_of_improvement(mixed, "x", "y", reps=50) == probability_of_improvement(mixed, "x", "y", reps=50)
    profiles = [performance_profiles(scores, [0.3, 0.6], reps=100)[1]["ddpg"] for _ in range(2)]
    np.testing.assert_array_equal(*profiles)
    assert np.random.random_sample() == expected_next


def test_a_method_is_higher_only_where_its_interval_clears_every_other():
    assert higher_interval({"a": (5.0, 4.0, 6.0), "b": (2.0, 1.0, 3.0), "c": (3.0, 2.5, 3.9)}) == "a"
    assert higher_interval({"a": (5.0, 3.5, 6.0), "b": (2.0, 1.0, 3.0), "c": (3.0, 2.5, 3.9)}) is None
    assert higher_interval({"a": (5.0, 3.0, 6.0), "b": (4.0, 3.0, 4.5)}) is None  # touching intervals overlap


def test_probability_of_improvement_and_profiles(scores, tmp_path):
    point, low, high = probability_of_improvement(scores, "beer", "ddpg", reps=200)
    assert point == 1.0 and low <= point <= high  # every beer run beats every ddpg run on every task
    assert probability_of_improvement(scores, "ddpg", "beer", reps=200)[0] == 0.0
    taus = np.linspace(0, 1, 11)
    profiles, cis = performance_profiles(scores, taus, reps=200)
    assert profiles["beer"][0] == 1.0 and profiles["ddpg"][-1] == 0.0
    assert np.all(np.diff(profiles["ddpg"]) <= 0)  # a survival function does not increase
    plot_aggregates(str(tmp_path / "aggregates.png"), aggregate_intervals(scores, reps=200))
    plot_profiles(str(tmp_path / "profiles.png"), taus, profiles, cis)
    for name in ("aggregates.png", "profiles.png"):
        assert min(Image.open(tmp_path / name).size) > 100


def test_learning_curve_bands_bracket_the_mean_and_shrink_with_agreement(tmp_path):
    rng = np.random.default_rng(1)
    curves = np.linspace(0, 500, 6)[None] + rng.normal(0, 50, (5, 6))
    mean, low, high = learning_curve_bands(curves, resamples=2000)
    np.testing.assert_allclose(mean, curves.mean(0))
    assert np.all(low <= mean) and np.all(mean <= high) and np.all(high - low > 0)
    # Percentile bootstrap of the mean: half-width about 1.96 sigma / sqrt(n) (sigma the population std).
    np.testing.assert_allclose((high - low) / 2, 1.96 * curves.std(0) / np.sqrt(5), rtol=0.35)
    narrow = learning_curve_bands(np.linspace(0, 500, 6)[None] + rng.normal(0, 5, (5, 6)), resamples=2000)
    assert np.all(narrow[2] - narrow[1] < high - low)
    np.testing.assert_array_equal(learning_curve_bands(np.full((3, 2), 7.0)), np.full((3, 2), 7.0))
    with pytest.raises(ValueError, match=r"\(runs, points\)"):
        learning_curve_bands(np.ones(4))
    steps = {"a": np.arange(6), "b": np.arange(6)}
    plot_learning_curves(str(tmp_path / "curves.png"), steps, {"a": {"beer": curves, "ddpg": curves / 2},
                                                               "b": {"beer": curves, "ddpg": curves}})
    assert min(Image.open(tmp_path / "curves.png").size) > 100

"""Steps-to-threshold (hand-computed crossings) and the bootstrap interval of a mean (coverage of a known mean)."""

import math

import numpy as np
import pytest

from jaxrep.metrics import bootstrap_mean_ci, steps_to_reach


def test_steps_to_reach_interpolates_the_first_crossing():
    steps, fd = [500, 1000, 1500, 2000], [40.0, 20.0, 10.0, 12.0]
    assert steps_to_reach(steps, fd, 15.0) == pytest.approx(1250.0)  # halfway between 20 @ 1000 and 10 @ 1500
    assert steps_to_reach(steps, fd, 20.0) == 1000.0
    assert steps_to_reach(steps, fd, 50.0) == 500.0  # already below at the first evaluation
    assert math.isnan(steps_to_reach(steps, fd, 5.0))  # never reached
    assert steps_to_reach(steps, fd, 11.0) == pytest.approx(1450.0)  # the first crossing, not the later rise
    with pytest.raises(ValueError, match="alike"):
        steps_to_reach(steps, fd[:3], 1.0)


def test_bootstrap_interval_contains_the_mean_and_covers_the_truth():
    mean, low, high = bootstrap_mean_ci([3.0, np.nan, 5.0, 4.0])
    assert mean == 4.0 and low <= mean <= high and 3.0 <= low and high <= 5.0
    assert bootstrap_mean_ci([7.0, 7.0]) == (7.0, 7.0, 7.0)
    assert all(math.isnan(v) for v in bootstrap_mean_ci([np.nan]))
    rng = np.random.default_rng(0)
    covered = [low <= 0.0 <= high for low, high in
               (bootstrap_mean_ci(rng.standard_normal(30), resamples=2000, seed=i)[1:] for i in range(200))]
    assert 0.88 <= np.mean(covered) <= 0.99  # nominal 95 %; the percentile bootstrap runs slightly narrow

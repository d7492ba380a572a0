import numpy as np

from jaxrep.metrics.convergence import faster_than_baseline, steps_to_reference

CHECKPOINTS = [500, 1000, 1500]


def test_a_seed_that_never_reaches_the_reference_counts_at_the_budget():
    curves = np.array([[60.0, 50.0, 40.0], [60.0, 50.0, 46.0], [40.0, 30.0, 20.0], [60.0, 50.0, 45.0]])
    # 45 is crossed at 1250 (halfway from 50 to 40), never by the second seed, at once by the third, at the
    # budget by the fourth (reached, not censored)
    steps, censored = steps_to_reference(CHECKPOINTS, curves, 45.0)
    np.testing.assert_allclose(steps, [1250.0, 1500.0, 500.0, 1500.0])
    np.testing.assert_array_equal(censored, [False, True, False, False])


def test_only_methods_whose_ci_lies_wholly_below_vanillas_are_faster():
    steps = {"none": np.array([1400.0, 1500.0, 1500.0]),
             "irepa": np.array([600.0, 700.0, 650.0]),  # well below: 1466.7 / 650 = 2.26x
             "repa": np.array([1300.0, 1500.0, 900.0]),  # overlaps vanilla's CI
             "erw": np.array([500.0, 600.0, 1500.0]),  # one seed unreached: never counted
             "repa_random": np.array([500.0])}  # one seed: never counted
    censored = {method: np.zeros(len(values), bool) for method, values in steps.items()}
    censored["erw"][2] = censored["none"][1] = True
    faster = faster_than_baseline(steps, censored, baseline="none")
    assert list(faster) == ["irepa"]
    np.testing.assert_allclose(faster["irepa"], (4400 / 3) / 650)
    two_seeds = {m: v[:2] for m, v in steps.items()}
    assert faster_than_baseline(two_seeds, censored, baseline="none") == {}  # too few seeds

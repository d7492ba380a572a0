"""Aggregate statistics of RL runs over tasks and seeds, as rliable recommends (Agarwal et al., "Deep RL at
the Edge of the Statistical Precipice", NeurIPS 2021): the interquartile mean (IQM) and mean of normalised
scores with stratified-bootstrap confidence intervals, performance profiles, and the probability of
improvement. The computation is rliable's (`rliable.library`, `rliable.metrics`); these functions fix the data
layout and the normalisation (the plots: `jaxrep.run.rl_figures`).

rliable's stratified bootstrap draws its indices from NumPy's global generator (`StratifiedBootstrap.update_indices`
calls `np.random.choice`) whatever `random_state` it is given, so each function here seeds that generator for
the call and restores it afterwards: the same scores and `seed` give the same intervals.

Scores: {method: (runs, tasks)} arrays of final returns. DM Control Suite returns lie in [0, 1000] per episode,
so `normalize_returns` divides by 1000 (the convention of the DMC papers' normalised scores).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

DMC_MAX_RETURN = 1000.0

Interval = tuple[float, float, float]  # (point estimate, low, high)


def normalize_returns(returns: Mapping[str, np.ndarray], max_return: float = DMC_MAX_RETURN) -> dict[str, np.ndarray]:
    """{method: (runs, tasks) returns} -> the same divided by `max_return`; every method needs the same tasks."""
    shapes = {np.asarray(r).shape[1:] for r in returns.values()}
    if len(shapes) != 1 or any(np.asarray(r).ndim != 2 for r in returns.values()):
        raise ValueError(f"returns must be (runs, tasks) arrays over the same tasks, got shapes "
                         f"{ {m: np.asarray(r).shape for m, r in returns.items()} }")
    return {method: np.asarray(r, np.float64) / max_return for method, r in returns.items()}


@contextlib.contextmanager
def _seeded_global_numpy(seed: int) -> Iterator[np.random.RandomState]:
    """Seeds NumPy's global generator (which rliable's bootstrap draws from) for the block, then restores it."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield np.random.RandomState(seed)
    finally:
        np.random.set_state(saved)


def aggregate_intervals(scores: Mapping[str, np.ndarray], *, reps: int = 50_000, confidence: float = 0.95,
                        seed: int = 0) -> dict[str, dict[str, Interval]]:
    """{method: {"iqm": (point, low, high), "mean": ...}}: rliable's stratified bootstrap (runs resampled within
    each task) of the IQM and the mean of the (runs, tasks) scores."""
    from rliable import library, metrics

    def aggregates(x):
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])

    with _seeded_global_numpy(seed) as random_state:
        points, intervals = library.get_interval_estimates(
            dict(scores), aggregates, reps=reps, confidence_interval_size=confidence, random_state=random_state)
    return {method: {name: (float(points[method][i]), float(intervals[method][0, i]), float(intervals[method][1, i]))
                     for i, name in enumerate(("iqm", "mean"))} for method in scores}


def higher_interval(intervals: Mapping[str, Interval]) -> str | None:
    """The method whose interval lies wholly above every other's (the difference is beyond the resampling's
    uncertainty), or None where the intervals overlap."""
    for method, (_, low, _) in intervals.items():
        if all(low > high for other, (_, _, high) in intervals.items() if other != method):
            return method
    return None


def probability_of_improvement(scores: Mapping[str, np.ndarray], x: str, y: str, *, reps: int = 2000,
                               seed: int = 0) -> Interval:
    """P(X > Y): the probability that a run of method `x` beats one of `y` on a random task (Mann-Whitney U per
    task, averaged), with its stratified-bootstrap interval."""
    from rliable import library, metrics

    pair = f"{x},{y}"
    with _seeded_global_numpy(seed) as random_state:
        points, intervals = library.get_interval_estimates(
            {pair: (scores[x], scores[y])}, metrics.probability_of_improvement, reps=reps, random_state=random_state)
    low, high = np.ravel(intervals[pair])
    return float(points[pair]), float(low), float(high)


def performance_profiles(scores: Mapping[str, np.ndarray], taus: Sequence[float], *, reps: int = 2000,
                         seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """({method: (T,) fraction of runs with score > tau}, {method: (2, T) bootstrap interval}) over `taus`."""
    from rliable import library

    with _seeded_global_numpy(seed):
        return library.create_performance_profile(dict(scores), np.asarray(taus), reps=reps)


def learning_curve_bands(curves: np.ndarray, *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
                         ) -> np.ndarray:
    """(3, points) mean and percentile-bootstrap interval over runs of (runs, points) evaluation returns, per
    evaluation point (`jaxrep.metrics.bootstrap_mean_ci`); with a handful of seeds the band is itself rough."""
    from jaxrep.metrics.convergence import bootstrap_mean_ci

    curves = np.asarray(curves, np.float64)
    if curves.ndim != 2:
        raise ValueError(f"curves must be (runs, points), got shape {curves.shape}")
    return np.array([bootstrap_mean_ci(curves[:, i], confidence=confidence, resamples=resamples, seed=seed)
                     for i in range(curves.shape[1])]).T

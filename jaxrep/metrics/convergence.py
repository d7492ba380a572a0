"""Convergence speed from evaluation curves: the steps a run needs to reach a quality threshold, a bootstrap
confidence interval of a mean over seeds, and which methods reach it faster than a baseline beyond seed noise
(the comparison REPA's "17.5x faster" claim makes, at small scale).
"""

from __future__ import annotations

import numpy as np


def steps_to_reach(steps, values, threshold: float) -> float:
    """First step at which a lower-is-better curve reaches `threshold`, linearly interpolated between the two
    evaluations around the crossing; NaN if it never does. steps (K,) increasing, values (K,)."""
    steps, values = np.asarray(steps, np.float64), np.asarray(values, np.float64)
    if steps.shape != values.shape or steps.ndim != 1:
        raise ValueError(f"steps and values must be (K,) alike, got {steps.shape} and {values.shape}")
    below = np.flatnonzero(values <= threshold)
    if not len(below):
        return float("nan")
    index = int(below[0])
    if index == 0:
        return float(steps[0])
    (s0, s1), (v0, v1) = steps[index - 1:index + 1], values[index - 1:index + 1]
    return float(s0 + (s1 - s0) * (v0 - threshold) / (v0 - v1))


def bootstrap_mean_ci(samples, *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
                      ) -> tuple[float, float, float]:
    """(mean, low, high): the percentile-bootstrap interval of the mean of `samples` (n,), NaNs dropped.

    With the few seeds a CPU study affords, the interval is wide and itself uncertain (the bootstrap
    underestimates spread for n < 10); it says how far apart methods must be before the gap is more than seed
    noise, not more.
    """
    samples = np.asarray(samples, np.float64)
    samples = samples[~np.isnan(samples)]
    if not len(samples):
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = rng.choice(samples, size=(resamples, len(samples)), replace=True).mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(samples.mean()), float(low), float(high)


def steps_to_reference(checkpoints, curves, reference: float) -> tuple[np.ndarray, np.ndarray]:
    """Each seed's steps to `reference` (`steps_to_reach`; curves (seeds, K) at `checkpoints` (K,)) and whether it
    never reached it; such a seed counts at the budget, a lower bound on its true steps (right-censored), so a
    method with one looks faster than it is."""
    reached = np.array([steps_to_reach(checkpoints, row, reference) for row in curves])
    return np.where(np.isnan(reached), checkpoints[-1], reached), np.isnan(reached)


def faster_than_baseline(steps: dict[str, np.ndarray], censored: dict[str, np.ndarray], baseline: str,
                         min_seeds: int = 3) -> dict[str, float]:
    """The methods whose steps-to-reference CI (`bootstrap_mean_ci`) lies wholly below the baseline's, with the
    speed-up of their means (the baseline's censored mean over theirs: a lower bound where the baseline has
    unreached seeds). A method with an unreached seed, or with fewer than `min_seeds` seeds (its or the
    baseline's), is never counted."""
    if len(steps[baseline]) < min_seeds:
        return {}
    _, baseline_low, _ = bootstrap_mean_ci(steps[baseline])
    faster = {}
    for method, values in steps.items():
        if method == baseline or len(values) < min_seeds or censored[method].any():
            continue
        mean, _, high = bootstrap_mean_ci(values)
        if high < baseline_low:
            faster[method] = float(np.mean(steps[baseline]) / mean)
    return faster

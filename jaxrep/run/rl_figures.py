"""The figures of an RL study's rliable statistics (`jaxrep.rl.statistics`): aggregate intervals, performance
profiles and learning-curve bands, each written to a PNG (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from jaxrep.rl.statistics import Interval, learning_curve_bands

__all__ = ["plot_aggregates", "plot_learning_curves", "plot_profiles"]


def plot_aggregates(path: str, intervals: Mapping[str, Mapping[str, Interval]]) -> None:
    """IQM and mean with their intervals, one row per method (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(intervals)
    fig, axes = plt.subplots(1, 2, figsize=(8, 0.6 * len(methods) + 1.4), dpi=120)
    for ax, name in zip(axes, ("iqm", "mean")):
        for row, method in enumerate(methods):
            point, low, high = intervals[method][name]
            ax.plot([low, high], [row, row], lw=6, alpha=0.5)
            ax.plot([point], [row], "k|", ms=14)
        ax.set_yticks(range(len(methods)), methods)
        ax.set_title(f"{name.upper() if name == 'iqm' else 'Mean'} (normalised score)")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_profiles(path: str, taus: Sequence[float], profiles: Mapping[str, np.ndarray],
                  cis: Mapping[str, np.ndarray]) -> None:
    """Performance profiles with their bootstrap bands (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for method, profile in profiles.items():
        ax.plot(taus, profile, label=method)
        ax.fill_between(taus, cis[method][0], cis[method][1], alpha=0.2)
    ax.set_xlabel("normalised score tau")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_learning_curves(path: str, steps: Mapping[str, Sequence[int]],
                         curves: Mapping[str, Mapping[str, np.ndarray]], ylabel: str = "eval return") -> None:
    """One panel per task: each method's mean of a per-run curve (by default the evaluation return) against agent
    steps (the loops' env steps: one action, held for the action repeat), with its bootstrap band.

    Args:
      steps: {task: agent steps (points,)}.
      curves: {task: {method: (runs, points) values}}.
      ylabel: what the values are.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(curves)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.2), dpi=110, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for method, runs in curves[task].items():
            mean, low, high = learning_curve_bands(runs)
            ax.plot(steps[task], mean, label=f"{method} (n={len(runs)})")
            ax.fill_between(steps[task], low, high, alpha=0.2)
        ax.set_title(task)
        ax.set_xlabel("agent steps")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{ylabel} (95 % bootstrap CI)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

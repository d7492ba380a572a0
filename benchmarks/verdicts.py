"""Words for what an interval shows, shared by the study reports (`beer_report`, `traversal_report`)."""

from __future__ import annotations


def compared(low: float, high: float, above: str, below: str, neither: str) -> str:
    """`above` where the interval [low, high] of a difference lies above 0, `below` where it lies below, else
    `neither`."""
    return above if low > 0 else below if high < 0 else neither

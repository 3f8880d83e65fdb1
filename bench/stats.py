"""Shared numbers for the bench scripts."""

from __future__ import annotations


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile `p` (0–100) of `values`; NaN when there are none."""
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")

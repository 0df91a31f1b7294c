"""Accuracy at equal compute: two training recipes compared at one FLOPs budget.

Each recipe leaves a curve of (training FLOPs, accuracy) points, measured where it was evaluated;
both start at (0, the base's accuracy) when they train the same base. Between measured points the
accuracy is read by linear interpolation in FLOPs, and never outside the FLOPs a curve covers: a
recipe is not credited with what it might have reached had it been run longer. The budget both
recipes are compared at is the largest one every curve covers: the smallest of their final FLOPs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def accuracy_at(flops: Sequence[float], values, budget: float) -> np.ndarray | float:
    """The curve's value at `budget` FLOPs, linearly interpolated between its two neighbouring points.

    `values` is one accuracy per point, or a (points, problems) array of per-problem scores (each
    problem's column is interpolated alike, so the mean of the result is the interpolated mean).

    >>> accuracy_at([0, 10, 30], [0.2, 0.4, 0.8], 20.0)
    0.6000000000000001
    """
    x = np.asarray(flops, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or y.shape[0] != x.size:
        raise ValueError(f"need one value (or row of values) per FLOPs point: {x.shape} points, {y.shape} values")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"FLOPs points must be distinct, got {x.tolist()}")
    if not x[0] <= budget <= x[-1]:
        raise ValueError(f"budget {budget:.4g} FLOPs lies outside the curve's points [{x[0]:.4g}, {x[-1]:.4g}]")
    if y.ndim == 1:
        return float(np.interp(budget, x, y))
    return np.array([np.interp(budget, x, column) for column in y.T])


def common_budget(curves: Sequence[Sequence[float]]) -> float:
    """The largest FLOPs budget that every curve (a list of its points' FLOPs) covers.

    >>> common_budget([[0, 5, 12], [0, 4, 8, 16]])
    12.0
    """
    if not curves or any(len(c) == 0 for c in curves):
        raise ValueError("need at least one curve, each with at least one point")
    low = max(min(c) for c in curves)
    high = min(max(c) for c in curves)
    if high < low:
        raise ValueError(f"the curves share no FLOPs range: one starts at {low:.4g}, another ends at {high:.4g}")
    return float(high)

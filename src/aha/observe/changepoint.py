"""Change points in the mean of a noisy series: PELT with a BIC-like penalty from the noise level.

Why not a threshold ("reflection rate above 0.2"): the level that means "changed" differs by task,
model and sampling temperature. A change point asks instead whether two means fit the series better
than one by more than noise explains, which needs no task-specific constant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Segment:
    start: int  # index of the first element
    end: int  # index one past the last element
    mean: float


def noise_sigma(x: Sequence[float]) -> float:
    """Noise level robust to level shifts: the MAD of first differences (a shift moves one
    difference only), scaled to a Gaussian std. Falls back to the differences' std when more than
    half of them are zero (e.g. a reflection rate stuck at exactly 0 for a long stretch)."""
    d = np.diff(np.asarray(x, dtype=float))
    if d.size == 0:
        return 0.0
    mad = float(np.median(np.abs(d - np.median(d))))
    sigma = 1.4826 * mad / np.sqrt(2.0)
    if sigma <= 0.0:
        sigma = float(np.std(d)) / np.sqrt(2.0)
    return sigma


def pelt(x: Sequence[float], penalty: float, min_size: int = 2) -> list[int]:
    """Indices where a new segment starts, minimising sum of squared deviations from each segment's
    mean + `penalty` per change (Killick et al. 2012, exact and linear-time on average)."""
    arr = np.asarray(x, dtype=float)
    n = arr.size
    if n < 2 * min_size:
        return []
    s1 = np.concatenate([[0.0], np.cumsum(arr)])
    s2 = np.concatenate([[0.0], np.cumsum(arr * arr)])

    def cost(starts: np.ndarray, end: int) -> np.ndarray:  # SSE of arr[starts:end] for each start
        m = end - starts
        tot = s1[end] - s1[starts]
        return (s2[end] - s2[starts]) - tot * tot / m

    best = np.full(n + 1, np.inf)
    best[0] = -penalty
    prev = np.zeros(n + 1, dtype=int)
    candidates = np.array([0])
    for t in range(min_size, n + 1):
        new = t - min_size
        if new >= min_size:  # a segment may start at `new` only if arr[:new] can be segmented
            candidates = np.append(candidates, new)
        totals = best[candidates] + cost(candidates, t) + penalty
        i = int(np.argmin(totals))
        best[t], prev[t] = totals[i], candidates[i]
        # Pruning: a start that is already worse than the optimum by a full penalty never wins later.
        candidates = candidates[totals - penalty <= best[t]]
    out, t = [], n
    while t > 0:
        t = int(prev[t])
        if t > 0:
            out.append(t)
    return sorted(out)


def segments(x: Sequence[float], penalty_scale: float = 3.0, min_size: int | None = None) -> list[Segment]:
    """Piecewise-constant fit of `x`. Penalty = penalty_scale · σ² · ln(n): σ² ln n per extra parameter
    is BIC's; scale 3 (≈ 1.5 parameters per change, its location and new mean) keeps pure noise to
    a single segment in practice while a shift of a few σ over a few steps is still found.

    Training curves are autocorrelated (the policy moves a little each step), which makes noise look
    like shifts. So a second pass re-fits with σ² replaced by the long-run variance of the first
    fit's residuals, σ²·(1+ρ)/(1−ρ) for lag-1 autocorrelation ρ."""
    arr = np.asarray(x, dtype=float)
    n = arr.size
    if n == 0:
        return []
    min_size = min_size or max(3, n // 25)
    sigma = noise_sigma(arr)
    if sigma <= 0.0:  # a constant series has no change
        return [Segment(0, n, float(arr.mean()))]
    first = _fit(arr, penalty_scale * sigma * sigma * np.log(n), min_size)
    variance = _long_run_variance(arr, first)
    if variance <= sigma * sigma:
        return first
    return _fit(arr, penalty_scale * variance * np.log(n), min_size)


def _fit(arr: np.ndarray, penalty: float, min_size: int) -> list[Segment]:
    bounds = [0, *pelt(arr, penalty, min_size), arr.size]
    return [Segment(a, b, float(arr[a:b].mean())) for a, b in zip(bounds, bounds[1:])]


def _long_run_variance(arr: np.ndarray, fit: list[Segment]) -> float:
    resid = arr - np.concatenate([np.full(s.end - s.start, s.mean) for s in fit])
    var = float(np.mean(resid * resid))
    if resid.size < 3 or var <= 0.0:
        return var
    rho = float(np.mean(resid[1:] * resid[:-1]) / var)
    rho = min(max(rho, 0.0), 0.9)  # negative ρ would shrink the penalty below the iid case
    return var * (1.0 + rho) / (1.0 - rho)

"""Confidence intervals for evaluation scores: the percentile bootstrap over problems.

The unit resampled is the problem, not the sample: the k samples of one problem are correlated
(one hard problem fails all of them), so resampling samples would understate the uncertainty. Each
resample draws `len(values)` problems with replacement and takes the mean of their per-problem
scores (for pass@1: each problem's share of correct samples); the interval is the central
`confidence` mass of those means. Seeded: the same inputs and seed give the same interval.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) problem indices drawn with replacement: the draws both implementations use."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _check_settings(confidence: float, resamples: int) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")


def bootstrap_ci(values: Sequence[float], resamples: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """(low, high) percentile-bootstrap interval of the mean of `values` (one score per problem)."""
    scores = np.asarray(values, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"need a non-empty 1-D list of per-problem scores, got shape {scores.shape}")
    _check_settings(confidence, resamples)
    means = scores[bootstrap_indices(scores.size, resamples, seed)].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def crossed_bootstrap_ci(matrix, resamples: int = 2000, confidence: float = 0.95,
                         seed: int = 0) -> tuple[float, float]:
    """(low, high) percentile-bootstrap interval of the mean of a (runs, problems) matrix of scores:
    every run (a training seed) scored on the same problems. Each resample draws runs and, apart,
    problems with replacement and takes the mean of the picked cells, so both seed-to-seed and
    problem-to-problem variation widen the interval. With one run it is `bootstrap_ci` of that
    run's row (the same problem draws). Few runs make the run level coarse (3 seeds: 10 distinct
    draws), so the interval then understates the seed-to-seed spread."""
    scores = np.asarray(matrix, dtype=np.float64)
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(f"need a non-empty (runs, problems) matrix of scores, got shape {scores.shape}")
    _check_settings(confidence, resamples)
    problems = bootstrap_indices(scores.shape[1], resamples, seed)  # (resamples, problems)
    run_draws = bootstrap_indices(scores.shape[0], resamples, seed + 1)  # (resamples, runs)
    # Each run's mean over resample b's problems, then the mean over resample b's runs.
    per_run = np.stack([row[problems].mean(axis=1) for row in scores])  # (runs, resamples)
    means = per_run[run_draws, np.arange(resamples)[:, None]].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)

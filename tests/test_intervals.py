"""The bootstrap interval against brute force: a plain loop over the same draws, and the exact
bootstrap distribution enumerated over every resample of a tiny set."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from aha.algo.intervals import bootstrap_ci, bootstrap_indices


def brute_force_ci(values, resamples, confidence, seed):
    """One resample at a time, the mean and the percentiles by hand (linear interpolation)."""
    means = []
    for row in bootstrap_indices(len(values), resamples, seed):
        picked = [values[int(i)] for i in row]
        means.append(sum(picked) / len(picked))
    means.sort()
    tail = (1 - confidence) / 2

    def percentile(q):
        pos = q * (len(means) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(means) - 1)
        return means[lo] + (means[hi] - means[lo]) * (pos - lo)

    return percentile(tail), percentile(1 - tail)


def test_matches_a_brute_force_loop():
    rng = np.random.default_rng(1)
    values = list(rng.integers(0, 5, size=37) / 4)  # pass@1 shares with k = 4
    assert bootstrap_ci(values, 500, 0.95, seed=3) == pytest.approx(brute_force_ci(values, 500, 0.95, 3), abs=1e-12)


def test_converges_to_the_exact_bootstrap_distribution():
    values = [0.0, 0.25, 1.0, 1.0, 0.5]
    means = sorted(sum(c) / len(c) for c in itertools.product(values, repeat=len(values)))  # all 5^5 resamples
    exact = (np.quantile(means, 0.025), np.quantile(means, 0.975))
    assert bootstrap_ci(values, 200_000, seed=0) == pytest.approx(exact, abs=0.021)  # one step of the 1/25 grid


def test_seeded_and_sane():
    values = [0.0, 1.0] * 50
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    low, high = bootstrap_ci(values, seed=7)
    assert low < 0.5 < high and high - low == pytest.approx(2 * 1.96 * 0.05, abs=0.03)  # normal approximation
    assert bootstrap_ci([0.75] * 10) == (0.75, 0.75)


@pytest.mark.parametrize("kwargs", [{"values": []}, {"values": [1.0], "confidence": 1.0},
                                    {"values": [1.0], "resamples": 0}])
def test_bad_input_is_refused(kwargs):
    with pytest.raises(ValueError):
        bootstrap_ci(**kwargs)

import math

import pytest

from aha.observe.stats import mean_ci95, t_quantile_975


def test_mean_ci95_reference_values():
    # mean 2, sd 1, n 3: half-width 4.303 / sqrt(3) = 2.4843
    mean, low, high = mean_ci95([1.0, 2.0, 3.0])
    assert mean == 2.0 and low == pytest.approx(-0.48434, abs=1e-4) and high == pytest.approx(4.48434, abs=1e-4)
    # n 2: t 12.706, sd sqrt(2)/... values 0.1, 0.3: mean 0.2, sd 0.141421, half 12.706*0.1 = 1.2706
    assert mean_ci95([0.1, 0.3])[1:] == pytest.approx((0.2 - 1.2706, 0.2 + 1.2706))
    assert mean_ci95([5.0, 5.0, 5.0]) == (5.0, 5.0, 5.0)


def test_edge_cases():
    mean, low, high = mean_ci95([0.7])
    assert mean == 0.7 and math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError, match="at least one"):
        mean_ci95([])
    assert t_quantile_975(2) == 4.303 and t_quantile_975(100) == 1.96
    with pytest.raises(ValueError):
        t_quantile_975(0)

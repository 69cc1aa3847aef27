"""Rank statistics used by check-ranking and retrain --pareto."""
import math

import numpy as np
import pytest

from nas.stats import bootstrap_interval, kendall_tau, spearman_rho


def test_kendall_tau_and_spearman_rho():
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert spearman_rho([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert math.isnan(kendall_tau([1], [2]))


def test_bootstrap_interval_is_seeded_and_brackets_the_statistic():
    rng = np.random.default_rng(0)
    xs = rng.random(20)
    ys = xs + rng.normal(0, 0.3, 20)  # correlated with noise: the interval is wide and its ends vary by seed
    a = bootstrap_interval(kendall_tau, xs, ys, resamples=300, seed=1)
    assert a == bootstrap_interval(kendall_tau, xs, ys, resamples=300, seed=1)
    assert a != bootstrap_interval(kendall_tau, xs, ys, resamples=300, seed=2)
    assert -1 <= a[0] < kendall_tau(xs, ys) < a[1] <= 1

"""Rank agreement between two lists of scores: Kendall's tau-b, Spearman's rho (scipy), and a seeded
bootstrap interval over the items."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy import stats


def kendall_tau(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Kendall's tau-b (ties handled); nan for fewer than 2 items or no variation."""
    if len(xs) < 2:
        return float("nan")
    return float(stats.kendalltau(xs, ys).statistic)


def spearman_rho(xs: Sequence[float], ys: Sequence[float]) -> float:
    if len(xs) < 2:
        return float("nan")
    return float(stats.spearmanr(xs, ys).statistic)


def bootstrap_interval(statistic: Callable[[Sequence[float], Sequence[float]], float], xs: Sequence[float],
                       ys: Sequence[float], *, resamples: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``statistic`` over item resamples drawn with replacement by ``default_rng(seed)``.

    Resamples with no variation (all one item) are left out; nan if none is left."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, len(x), len(x))
        value = statistic(x[idx], y[idx])
        if not math.isnan(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


__all__ = ["kendall_tau", "spearman_rho", "bootstrap_interval"]

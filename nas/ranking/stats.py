"""Rank agreement between two lists of scores: Kendall's tau-b, Spearman's rho (scipy), a seeded bootstrap
interval over the items, and the noise ceiling of a truth measured as a mean over training seeds."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np


def kendall_tau(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Kendall's tau-b (ties handled); nan for fewer than 2 items or no variation."""
    if len(xs) < 2:
        return float("nan")
    from scipy import stats  # here, not at the top: importing scipy.stats takes 1.5 s, and most importers never rank

    return float(stats.kendalltau(xs, ys).statistic)


def spearman_rho(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rho; nan for fewer than 2 items or no variation (where scipy would also print a warning)."""
    if len(xs) < 2 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return float("nan")
    from scipy import stats

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


def best_fraction_agreement(scores: Sequence[float], truth: Sequence[float], fraction: float = 0.25) -> dict:
    """How well ``scores`` serve a search, which keeps only the top: over the truth's best ``fraction`` of the items
    (at least 2), Kendall tau of the scores within them (``tau``), how many of them are also among the scores'
    best as many (``shared``, of ``size``), the truth's rank of the scores' top item (``pick_rank``, 1 = the truth's
    best) and what choosing it loses against the truth's best (``pick_regret``, in the truth's units)."""
    order_truth = sorted(range(len(truth)), key=lambda i: -truth[i])
    order_scores = sorted(range(len(scores)), key=lambda i: -scores[i])
    size = min(len(truth), max(2, math.ceil(fraction * len(truth))))
    best = order_truth[:size]
    pick = order_scores[0]
    return {"size": size, "tau": kendall_tau([scores[i] for i in best], [truth[i] for i in best]),
            "shared": len(set(best) & set(order_scores[:size])), "pick_rank": order_truth.index(pick) + 1,
            "pick_regret": truth[order_truth[0]] - truth[pick]}


def noise_ceiling_tau(per_item_seeds: Sequence[Sequence[float]], *, simulations: int = 1000,
                      seed: int = 0) -> float:
    """Kendall tau a perfect predictor could expect against a truth that is the mean of n noisy seeds per item.

    A perfect predictor knows each item's expected score, not the seeds' luck. Model: seed scores are the expected
    score plus Gaussian noise with the within-item variance pooled over items (unbiased, n - 1). The seed means
    spread more than the expected scores do (by the noise's share, var/n), so the expected scores are estimated
    by shrinking the means toward their grand mean until their spread is the means' spread less that share. Then
    ``simulations`` truths are drawn (``default_rng(seed)``) and the mean tau against the expected scores is
    returned: what the truth can confirm at best. nan for fewer than 2 items or fewer than 2 seeds."""
    scores = np.asarray(per_item_seeds, dtype=float)
    if scores.ndim != 2 or scores.shape[0] < 2 or scores.shape[1] < 2:
        return float("nan")
    n = scores.shape[1]
    means = scores.mean(axis=1)
    noise_var = float(scores.var(axis=1, ddof=1).mean())
    spread_var = float(means.var(ddof=1))
    if noise_var == 0:
        return 1.0 if spread_var > 0 else float("nan")
    signal_var = max(spread_var - noise_var / n, 0.0)
    if signal_var == 0:
        return 0.0  # the means' spread is all noise: no ranking of them is confirmable
    expected = means.mean() + (means - means.mean()) * math.sqrt(signal_var / spread_var)
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, math.sqrt(noise_var), size=(simulations, len(expected), n)).mean(axis=2)
    return float(np.mean([kendall_tau(expected, expected + draw) for draw in noise]))


__all__ = ["kendall_tau", "spearman_rho", "bootstrap_interval", "noise_ceiling_tau"]

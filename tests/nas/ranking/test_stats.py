"""Rank statistics used by check-ranking and retrain --pareto."""
import math

import numpy as np
import pytest

from nas.ranking.stats import best_fraction_agreement, bootstrap_interval, kendall_tau, noise_ceiling_tau, spearman_rho


def test_kendall_tau_and_spearman_rho():
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert spearman_rho([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert math.isnan(kendall_tau([1], [2]))


def test_no_variation_is_nan_without_a_warning(recwarn):
    # a check-ranking of 1-epoch runs can give every arch the same top-1: scipy printed a ConstantInputWarning
    for xs, ys in (([0.2, 0.2, 0.2], [0.1, 0.5, 0.3]), ([0.1, 0.5, 0.3], [0.2, 0.2, 0.2])):
        assert math.isnan(spearman_rho(xs, ys)) and math.isnan(kendall_tau(xs, ys))
    assert not recwarn.list, [str(w.message) for w in recwarn.list]


def test_bootstrap_interval_is_seeded_and_brackets_the_statistic():
    rng = np.random.default_rng(0)
    xs = rng.random(20)
    ys = xs + rng.normal(0, 0.3, 20)  # correlated with noise: the interval is wide and its ends vary by seed
    a = bootstrap_interval(kendall_tau, xs, ys, resamples=300, seed=1)
    assert a == bootstrap_interval(kendall_tau, xs, ys, resamples=300, seed=1)
    assert a != bootstrap_interval(kendall_tau, xs, ys, resamples=300, seed=2)
    assert -1 <= a[0] < kendall_tau(xs, ys) < a[1] <= 1


def test_noise_ceiling_is_one_without_noise_and_falls_as_noise_grows():
    expected = np.linspace(0.5, 0.9, 12)
    rng = np.random.default_rng(0)
    exact = np.repeat(expected[:, None], 3, axis=1)
    assert noise_ceiling_tau(exact) == pytest.approx(1.0)
    ceilings = [noise_ceiling_tau(expected[:, None] + rng.normal(0, sd, (12, 3)), simulations=300) for sd in
                (0.01, 0.05, 0.2)]
    assert ceilings[0] > ceilings[1] > ceilings[2]
    assert ceilings[0] > 0.9 and ceilings[2] < 0.5
    assert math.isnan(noise_ceiling_tau(exact[:, :1]))  # one seed: no noise estimate
    # Pure noise: the means' spread is all noise, so on average there is little to confirm (one draw can be lucky).
    assert np.mean([noise_ceiling_tau(rng.normal(0.7, 0.05, (12, 3)), simulations=100) for _ in range(20)]) < 0.3


def test_noise_ceiling_matches_the_truth_it_models():
    # 16 items, noise sd 0.04 around expected scores 2 points apart: simulate the real thing (a perfect
    # predictor against a fresh 3-seed mean) and compare with the estimate from one observed set of seeds.
    rng = np.random.default_rng(1)
    expected = np.linspace(0.5, 0.8, 16)
    real = np.mean([kendall_tau(expected, (expected[:, None] + rng.normal(0, 0.04, (16, 3))).mean(axis=1))
                    for _ in range(400)])
    estimates = [noise_ceiling_tau(expected[:, None] + rng.normal(0, 0.04, (16, 3)), simulations=200, seed=s)
                 for s in range(20)]
    assert abs(np.mean(estimates) - real) < 0.05
    more_seeds = noise_ceiling_tau(expected[:, None] + rng.normal(0, 0.04, (16, 5)), simulations=300)
    assert more_seeds > real - 0.02  # five seeds raise the ceiling


def test_best_fraction_agreement_looks_where_a_search_chooses():
    truth = [8, 7, 6, 5, 4, 3, 2, 1]
    scores = [5, 6, 1, 2, 9, 3, 4, 0]  # the truth's two best in the wrong order; the top score on the truth's #5
    got = best_fraction_agreement(scores, truth, 0.25)
    assert got == {"size": 2, "tau": pytest.approx(-1.0), "shared": 1, "pick_rank": 5, "pick_regret": 4}
    perfect = best_fraction_agreement(truth, truth, 0.25)
    assert (perfect["tau"], perfect["shared"], perfect["pick_rank"], perfect["pick_regret"]) == (1.0, 2, 1, 0)
    assert best_fraction_agreement([1, 2, 3], [3, 2, 1], 0.25)["size"] == 2  # at least two items

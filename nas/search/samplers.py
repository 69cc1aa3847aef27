"""The Optuna samplers a search can use, each seeded by the search's seed."""
from __future__ import annotations

import optuna

from nas.errors import UserError
from nas.settings import SEARCH_SAMPLERS


def make_optuna_sampler(name: str, seed: int, trials: int):
    """Constraint-aware samplers read the values ``BudgetGuard`` sets with ``Trial.set_constraint``."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=min(10, max(2, trials // 4)))
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 4)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"unknown sampler {name!r} (choose from {', '.join(SEARCH_SAMPLERS)})")

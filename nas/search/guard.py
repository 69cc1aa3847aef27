"""The searcher wrapper that keeps over-budget and repeated archs from becoming Ray trials, and tells results to the
sampler in suggestion order (so the same seed gives the same trials)."""
from __future__ import annotations

import json
import os

from ray.tune.search import Searcher

from nas.errors import UserError
from nas.runs.migrate import migrate
from nas.search.constraints import BudgetConstraint
from nas.search.params import arch_from_params

OBJECTIVES = ("top1", "flops", "latency_ms")
MODES = ("max", "min", "min")


class BudgetGuard(Searcher):
    """Wraps OptunaSearch so that only new, within-budget archs become Ray trials.

    Every suggestion gets its constraint values (``Trial.set_constraint``: <= 0 is feasible). One
    over the budget is told to Optuna at once as infeasible under a probe id (never evaluated) and
    logged to ``suggestions.jsonl`` (as is every suggestion that becomes a trial); one already
    evaluated is told its known result; one running now is pruned. Then the next suggestion is
    asked for.
    """

    def __init__(self, searcher, constraint: BudgetConstraint, log_path: str | os.PathLike,
                 max_skips_per_trial: int = 500, ordered_concurrency: int | None = None) -> None:
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher, self.constraint = searcher, constraint
        self.log_path = str(log_path)
        self.max_skips = max_skips_per_trial
        # Reproducible order (``ordered_concurrency`` = the number of concurrent trials c): results are told in
        # suggestion order, and suggestion n waits until trials 0..n-c have been told, so what the sampler knows at
        # each suggestion never depends on which trial finished first (issue #11).
        self.lag = ordered_concurrency
        self.aliases: dict[str, str] = {}       # Ray trial id -> the searcher's id for it
        self.evaluated: dict[str, dict] = {}    # arch key -> objectives of its completed (and told) trial
        self.pending: dict[str, str] = {}       # Ray trial id -> arch key, until told
        self.order: list[str] = []              # Ray trial ids in suggestion order
        self.finished: dict[str, tuple] = {}    # Ray trial id -> (result, error), finished but not yet told
        self.told = 0                           # order[:told] have been told
        self.num_probes = 0

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def _set_constraints(self, probe: str, violations: dict[str, float]) -> None:
        # Ray's OptunaSearch keeps the asked optuna Trial per id; Optuna 5 wants constraints set on it.
        trial = self.searcher._ot_trials[probe]
        for name, value in violations.items():
            trial.set_constraint(name, float(value))

    def suggest(self, trial_id: str):
        if self.lag is not None:
            needed = len(self.order) - self.lag + 1  # trials 0..n-c must have been told
            self._flush(needed)
            if self.told < needed:
                return None  # not now: Tune asks again when another trial finishes
        for _ in range(self.max_skips):
            self.num_probes += 1
            probe = f"{trial_id}~{self.num_probes}"
            config = self.searcher.suggest(probe)
            if not isinstance(config, dict):
                return config  # None (not now) or Searcher.FINISHED
            arch = arch_from_params(config, self.constraint.space.num_stages)
            violations, rejected = self.constraint.screen(arch)
            self._set_constraints(probe, violations)
            if rejected is not None:
                self.searcher.on_trial_complete(probe, result=rejected)
                latency = rejected["latency_ms"] if self.constraint.latency_table is not None else None
                with open(self.log_path, "a") as f:
                    f.write(json.dumps({"probe": probe, "arch": arch.to_dict(), "flops": rejected["flops"],
                                        "latency_ms": latency, "state": "rejected_over_budget"}) + "\n")
                continue
            if arch.key() in self.evaluated:  # seen: the sampler learns the known result, no new trial
                known = self.evaluated[arch.key()]
                self._set_measured_latency_constraint(probe, known)
                self.searcher.on_trial_complete(probe, result=known)
                continue
            if arch.key() in self.pending.values():  # running now: pruned for the sampler, no new trial
                self.searcher.on_trial_complete(probe, result=None)
                continue
            self.aliases[trial_id] = probe
            self.pending[trial_id] = arch.key()
            self.order.append(trial_id)
            with open(self.log_path, "a") as f:  # Ray's trial ids are random: this records the order
                f.write(json.dumps({"probe": probe, "trial": trial_id, "state": "suggested"}) + "\n")
            return config
        raise UserError(f"{self.max_skips} suggestions in a row were over the budget or already evaluated: the "
                        f"budget may be near the cheapest arch (python launch.py space), or --trials exceeds "
                        f"what the space holds under it")

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(self.aliases.get(trial_id, trial_id), result)

    def _set_measured_latency_constraint(self, probe: str, result: dict | None) -> None:
        """``--latency measure`` with a latency budget: the trial measured it; the sampler learns it as a
        constraint (regression: issue #11 -- a violation used to be told as a feasible point with top-1 0)."""
        if self.constraint.latency_after_trial and result and "latency_ms" in result:
            self._set_constraints(probe, {"latency_over_budget":
                                          self.constraint.measured_violation(result["latency_ms"])})

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self.lag is None or trial_id not in self.pending:
            self._tell(trial_id, result, error)
            return
        self.finished[trial_id] = (result, error)
        self._flush(len(self.order) - self.lag + 1)

    def _flush(self, count: int) -> None:
        """Tell the finished trials among the first ``count`` in suggestion order, stopping at the first unfinished."""
        while self.told < min(count, len(self.order)) and self.order[self.told] in self.finished:
            trial_id = self.order[self.told]
            self._tell(trial_id, *self.finished.pop(trial_id))
            self.told += 1

    def _tell(self, trial_id: str, result: dict | None, error: bool) -> None:
        key = self.pending.pop(trial_id, None)
        complete = bool(result) and not error and all(m in result for m in OBJECTIVES)
        if key is not None and complete:
            self.evaluated[key] = {m: result[m] for m in OBJECTIVES}
        probe = self.aliases.get(trial_id, trial_id)
        if complete:
            self._set_measured_latency_constraint(probe, result)
        self.searcher.on_trial_complete(probe, result=result, error=error)

    # Tune checkpoints a wrapper (anything with .searcher) by get_state/set_state and the wrapped
    # OptunaSearch (study and sampler) by its own save_to_dir.
    def get_state(self) -> dict:
        return {"aliases": dict(self.aliases), "evaluated": dict(self.evaluated), "pending": dict(self.pending),
                "num_probes": self.num_probes, "lag": self.lag, "order": list(self.order),
                "finished": dict(self.finished), "told": self.told}

    def set_state(self, state: dict) -> None:
        state = migrate("search state", state)
        self.aliases, self.evaluated = dict(state["aliases"]), dict(state["evaluated"])
        self.pending, self.num_probes = dict(state["pending"]), state["num_probes"]
        self.lag = state["lag"]
        self.order, self.finished = list(state["order"]), dict(state["finished"])
        self.told = state["told"]

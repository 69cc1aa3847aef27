"""What stands between the sampler and Ray Tune: each suggestion passes a chain of small jobs before it may become a
trial, and results reach the sampler in suggestion order (so the same seed gives the same trials).

- :class:`OverBudget`: a suggestion over the budget is told to the sampler at once as infeasible, never run;
- :class:`Duplicates`: one already evaluated is told its known result; one running now is pruned;
- :class:`SuggestionOrder`: results are told in suggestion order, and a suggestion waits for the results it needs;
- :class:`SuggestionLog`: ``suggestions.jsonl``, every suggestion that became a trial or was rejected, in order.

:class:`BudgetGuard` composes them as a Ray Tune ``Searcher`` around ``OptunaSearch``. The filters speak to the
sampler through a :class:`SamplerPort` only, so a plain Optuna ask/tell loop can run the very same chain.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ray.tune.search import Searcher

from nas.errors import UserError
from nas.runs.layout import SUGGESTIONS
from nas.runs.migrate import migrate
from nas.runs.run import Run
from nas.search.constraints import BudgetConstraint
from nas.search.params import arch_from_params
from nas.search.score import SCORES
from searchspace import Arch, atomic_path

MODES = ("max", "min", "min")


def objective_names(score: str) -> tuple[str, str, str]:
    """The search's objectives, in the order of ``MODES``: the key of the score named ``score`` (a ``--score`` value,
    ``nas.search.score``), FLOPs, latency."""
    return SCORES[score].key, "flops", "latency_ms"


class SamplerPort(Protocol):
    """How a filter reaches the sampler about a suggestion (``probe``: the sampler's id for it)."""

    def set_constraints(self, probe: str, violations: dict[str, float]) -> None: ...

    def tell(self, probe: str, result: dict | None) -> None:
        """``result`` (objectives) as the suggestion's outcome; None prunes it."""


@dataclass(frozen=True)
class Handled:
    """A suggestion that a filter dealt with: it does not become a trial."""
    reason: str            # "rejected_over_budget", "repeat" or "running"
    result: dict | None    # what the sampler was told


class OverBudget:
    """Sets every suggestion's constraint values (<= 0 is feasible); one over the budget is told at once as
    infeasible, under its probe id, and never evaluated. A latency only a trial measures becomes a constraint when
    the result is told."""

    def __init__(self, constraint: BudgetConstraint) -> None:
        self.constraint = constraint

    def screen(self, probe: str, arch: Arch, sampler: SamplerPort) -> Handled | None:
        violations, rejected = self.constraint.screen(arch)
        sampler.set_constraints(probe, violations)
        if rejected is None:
            return None
        sampler.tell(probe, rejected)
        return Handled("rejected_over_budget", rejected)

    def before_tell(self, probe: str, result: dict, sampler: SamplerPort) -> None:
        """``--latency measure`` with a latency budget: the trial measured it; the sampler learns it as a
        constraint, never as a feasible point."""
        if self.constraint.latency_after_trial and "latency_ms" in result:
            sampler.set_constraints(probe, {"latency_over_budget":
                                            self.constraint.measured_violation(result["latency_ms"])})


class Duplicates:
    """An arch is evaluated once: a suggestion of one already evaluated is told its known result, one of an arch
    running now is pruned. ``before_tell`` runs before a known result is told (:meth:`OverBudget.before_tell`)."""

    def __init__(self, before_tell=None) -> None:
        self.before_tell = before_tell
        self.evaluated: dict[str, dict] = {}    # arch key -> objectives of its completed (and told) trial
        self.pending: dict[str, str] = {}       # trial id -> arch key, until told

    def screen(self, probe: str, arch: Arch, sampler: SamplerPort) -> Handled | None:
        key = arch.key()
        if key in self.evaluated:
            if self.before_tell is not None:
                self.before_tell(probe, self.evaluated[key], sampler)
            sampler.tell(probe, self.evaluated[key])
            return Handled("repeat", self.evaluated[key])
        if key in self.pending.values():
            sampler.tell(probe, None)
            return Handled("running", None)
        return None

    def start(self, trial_id: str, arch: Arch) -> None:
        self.pending[trial_id] = arch.key()

    def finish(self, trial_id: str, objectives: dict | None) -> None:
        """The trial's result is told: its objectives (None: it failed) answer later suggestions of its arch."""
        key = self.pending.pop(trial_id, None)
        if key is not None and objectives is not None:
            self.evaluated[key] = objectives


class SuggestionOrder:
    """Reproducible order with ``lag`` (the number of concurrent trials c): results are told in suggestion order,
    and suggestion n waits until trials 0..n-c have been told, so what the sampler knows at each suggestion never
    depends on which trial finished first."""

    def __init__(self, lag: int) -> None:
        self.lag = lag
        self.order: list[str] = []              # trial ids in suggestion order
        self.finished: dict[str, tuple] = {}    # trial id -> (result, error), finished but not yet told
        self.told = 0                           # order[:told] have been told

    def _needed(self) -> int:
        return len(self.order) - self.lag + 1

    def tellable(self) -> list[tuple[str, dict | None, bool]]:
        """The finished trials whose turn has come, in suggestion order (each counted as told)."""
        ready = []
        while self.told < min(self._needed(), len(self.order)) and self.order[self.told] in self.finished:
            trial_id = self.order[self.told]
            ready.append((trial_id, *self.finished.pop(trial_id)))
            self.told += 1
        return ready

    def may_suggest(self) -> bool:
        return self.told >= self._needed()

    def add(self, trial_id: str) -> None:
        self.order.append(trial_id)

    def finish(self, trial_id: str, result: dict | None, error: bool) -> list[tuple[str, dict | None, bool]]:
        self.finished[trial_id] = (result, error)
        return self.tellable()


class SuggestionLog:
    """``suggestions.jsonl`` in the search's run folder: each suggestion that became a trial (Ray's trial ids are
    random: this records the order) or was rejected over the budget, one JSON line each. Its lines are part of the
    guard's saved state, so a resumed search rewrites the file as that state had it: lines a killed driver wrote
    after the state it is resumed from would name trials the search no longer has."""

    def __init__(self, run: Run) -> None:
        self.run = run  # unpickled by a driver on another machine: that machine's mirror of the run folder
        self.lines: list[dict] = []

    @property
    def path(self) -> Path:
        return self.run.path(SUGGESTIONS)

    def _write(self, line: dict) -> None:
        self.lines.append(line)
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")

    def suggested(self, probe: str, trial_id: str) -> None:
        self._write({"probe": probe, "trial": trial_id, "state": "suggested"})

    def rejected(self, probe: str, arch: Arch, result: dict, latency_known: bool) -> None:
        self._write({"probe": probe, "arch": arch.to_dict(), "flops": result["flops"],
                     "latency_ms": result["latency_ms"] if latency_known else None, "state": "rejected_over_budget"})

    def restore(self, lines: list[dict]) -> None:
        """The log as a saved state had it, written whole."""
        self.lines = list(lines)
        with atomic_path(self.path) as tmp:
            Path(tmp).write_text("".join(json.dumps(line) + "\n" for line in self.lines))


def complete_objectives(result: dict | None, error: bool, names: tuple[str, ...]) -> dict | None:
    """The objectives ``names`` of a trial's result, or None when it failed or reported them not all."""
    if not result or error or not all(m in result for m in names):
        return None
    return {m: result[m] for m in names}


class _OptunaSearchPort:
    """The port over Ray's ``OptunaSearch``: it keeps the asked Optuna trial per id, on which Optuna wants the
    constraints set."""

    def __init__(self, searcher) -> None:
        self.searcher = searcher

    def set_constraints(self, probe: str, violations: dict[str, float]) -> None:
        trial = self.searcher._ot_trials[probe]
        for name, value in violations.items():
            trial.set_constraint(name, float(value))

    def tell(self, probe: str, result: dict | None) -> None:
        self.searcher.on_trial_complete(probe, result=result)


class StudyPort:
    """The port over a plain Optuna study driven by ask/tell in one process (no Ray): what
    ``benchmarks/search_overhead.py`` runs the same chain through, as the baseline of the Ray Tune search."""

    def __init__(self, study, names: tuple[str, ...]) -> None:
        self.study, self.asked, self.names = study, {}, names

    def ask(self, probe: str, distributions: dict):
        self.asked[probe] = trial = self.study.ask(fixed_distributions=distributions)
        return trial

    def set_constraints(self, probe: str, violations: dict[str, float]) -> None:
        for name, value in violations.items():
            self.asked[probe].set_constraint(name, float(value))

    def tell(self, probe: str, result: dict | None) -> None:
        from optuna.trial import TrialState

        trial = self.asked.pop(probe)
        if result is None:
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, [result[m] for m in self.names])


class BudgetGuard(Searcher):
    """Wraps OptunaSearch so that only new, within-budget archs become Ray trials (module docstring: the chain).

    Each Ray trial id gets the sampler's id of the suggestion it runs (its probe); the suggestions asked for it
    that were dealt with are told under their own probe ids. ``ordered_concurrency``: see :class:`SuggestionOrder`
    (None: results are told as trials finish).
    """

    def __init__(self, searcher, constraint: BudgetConstraint, run: Run, max_skips_per_trial: int = 500,
                 ordered_concurrency: int | None = None) -> None:
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher, self.port = searcher, _OptunaSearchPort(searcher)
        self.num_stages = constraint.space.num_stages
        self.over_budget = OverBudget(constraint)
        self.duplicates = Duplicates(before_tell=self.over_budget.before_tell)
        self.order = SuggestionOrder(ordered_concurrency) if ordered_concurrency is not None else None
        self.log = SuggestionLog(run)
        self.max_skips = max_skips_per_trial
        self.aliases: dict[str, str] = {}       # Ray trial id -> the searcher's id for it
        self.num_probes = 0

    @property
    def objectives(self) -> tuple[str, ...]:
        """The wrapped searcher's metrics (a property, not a field: guards pickled before it existed resume)."""
        return tuple(self.searcher.metric)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str):
        if self.order is not None:
            self._tell_all(self.order.tellable())
            if not self.order.may_suggest():
                return None  # not now: Tune asks again when another trial finishes
        for _ in range(self.max_skips):
            self.num_probes += 1
            probe = f"{trial_id}~{self.num_probes}"
            config = self.searcher.suggest(probe)
            if not isinstance(config, dict):
                return config  # None (not now) or Searcher.FINISHED
            arch = arch_from_params(config, self.num_stages)
            handled = (self.over_budget.screen(probe, arch, self.port)
                       or self.duplicates.screen(probe, arch, self.port))
            if handled is not None:
                if handled.reason == "rejected_over_budget":
                    self.log.rejected(probe, arch, handled.result,
                                      latency_known=self.over_budget.constraint.latency_table is not None)
                continue
            self.aliases[trial_id] = probe
            self.duplicates.start(trial_id, arch)
            if self.order is not None:
                self.order.add(trial_id)
            self.log.suggested(probe, trial_id)
            return config
        raise UserError(f"{self.max_skips} suggestions in a row were over the budget or already evaluated: the "
                        f"budget may be near the cheapest arch (python launch.py space), or --trials exceeds "
                        f"what the space holds under it")

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(self.aliases.get(trial_id, trial_id), result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self.order is None or trial_id not in self.duplicates.pending:
            self._tell(trial_id, result, error)
        else:
            self._tell_all(self.order.finish(trial_id, result, error))

    def _tell_all(self, ready: list[tuple[str, dict | None, bool]]) -> None:
        for trial_id, result, error in ready:
            self._tell(trial_id, result, error)

    def _tell(self, trial_id: str, result: dict | None, error: bool) -> None:
        objectives = complete_objectives(result, error, self.objectives)
        self.duplicates.finish(trial_id, objectives)
        probe = self.aliases.get(trial_id, trial_id)
        if objectives is not None:
            self.over_budget.before_tell(probe, result, self.port)
        self.searcher.on_trial_complete(probe, result=result, error=error)

    # Tune checkpoints a wrapper (anything with .searcher) by get_state/set_state and the wrapped
    # OptunaSearch (study and sampler) by its own save_to_dir. One flat record: older searches resume from it.
    def get_state(self) -> dict:
        order = self.order or SuggestionOrder(0)
        return {"aliases": dict(self.aliases), "evaluated": dict(self.duplicates.evaluated),
                "pending": dict(self.duplicates.pending), "num_probes": self.num_probes,
                "lag": None if self.order is None else self.order.lag, "order": list(order.order),
                "finished": dict(order.finished), "told": order.told, "log": list(self.log.lines)}

    def set_state(self, state: dict) -> None:
        state = migrate("search state", state)
        self.aliases, self.num_probes = dict(state["aliases"]), state["num_probes"]
        self.duplicates.evaluated, self.duplicates.pending = dict(state["evaluated"]), dict(state["pending"])
        self.order = None if state["lag"] is None else SuggestionOrder(state["lag"])
        if self.order is not None:
            self.order.order, self.order.finished = list(state["order"]), dict(state["finished"])
            self.order.told = state["told"]
        if state["log"] is not None:
            self.log.restore(state["log"])


__all__ = ["MODES", "objective_names", "SamplerPort", "Handled", "OverBudget", "Duplicates", "SuggestionOrder",
           "SuggestionLog", "complete_objectives", "StudyPort", "BudgetGuard"]

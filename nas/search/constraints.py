"""What a suggestion is told when it breaks the search's budget, and its constraint values (<= 0 is feasible)."""
from __future__ import annotations

from nas.search.score import rejected_scores
from searchspace import DEPLOYMENT, Arch, Budget, SearchSpace, arch_cost

# What a rejected arch is told as latency when no table predicts it (``--latency measure``): finite, because
# Optuna refuses NaN for a complete trial, and the worst a search could see. Its constraint
# violation, not this number, is what makes the sampler avoid it.
UNMEASURED_LATENCY_MS = 1e6


class BudgetConstraint:
    """Constraint values for an arch (<= 0 is feasible), as the search's :class:`~searchspace.Budget` gives them.

    With a latency table both FLOPs and latency are known before a trial. Without one (``--latency measure``) the
    latency constraint is known only once the trial has measured it: ``latency_after_trial``.
    """

    def __init__(self, space: SearchSpace, budget: Budget, latency_table=None) -> None:
        self.space, self.budget, self.latency_table = space, budget, latency_table

    @property
    def latency_after_trial(self) -> bool:
        return self.budget.latency_s is not None and self.latency_table is None

    def latency_ms(self, arch: Arch) -> float:
        """Predicted latency, or ``UNMEASURED_LATENCY_MS`` without a table."""
        return self.latency_table.predict(arch) * 1e3 if self.latency_table is not None else UNMEASURED_LATENCY_MS

    def violations(self, arch: Arch) -> dict[str, float]:
        """The constraints known before a trial."""
        latency = self.latency_table.predict(arch) if self.latency_table is not None else None
        return self.budget.violations(arch_cost(arch, DEPLOYMENT), latency_s=latency)

    def screen(self, arch: Arch) -> tuple[dict[str, float], dict | None]:
        """A suggestion's constraint values (set on its Optuna trial) and, when it is over the budget, the
        result it is told instead of running: the worst scores and finite costs, the constraints making it
        infeasible. A latency that only a trial measures is not held against it."""
        violations = self.violations(arch)
        if max(violations.values()) <= 0:
            return violations, None
        if self.latency_after_trial:
            violations["latency_over_budget"] = 0.0
        return violations, {**rejected_scores(), "flops": arch_cost(arch, DEPLOYMENT).flops,
                            "latency_ms": self.latency_ms(arch)}

    def measured_violation(self, latency_ms: float) -> float:
        return latency_ms / 1e3 / self.budget.latency_s - 1.0

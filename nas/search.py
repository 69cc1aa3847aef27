"""The search: Ray Tune runs the trials, Optuna proposes them (``OptunaSearch``), three objectives.

Objectives: top-1 (max; supernet weights inherited, fine-tuned alone for ``finetune_steps`` steps of the
supernet's recipe, BatchNorm recalibrated, validation split), FLOPs
(min; deployment setting, exact analytic count) and latency (min; LUT prediction or measurement
on this device). Hard budgets: an over-budget arch is rejected by ``BudgetGuard`` before Ray
ever starts a trial for it: Optuna is told it is infeasible (so its sampler learns), the
rejection is logged, and nothing is evaluated. A trial's work lives in ``evaluate_trial``; the
Optuna search space is declarative (no computation in a define-by-run function).

Reproducibility: by default results are told to the sampler in suggestion order (``BudgetGuard``'s
``ordered_concurrency``), so the same seed, supernet and flags give the same trials in the same order
whichever trial finishes first; measured latencies (``--latency measure``) still vary from run to run.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from ray.tune.search import Searcher

from nas.config import FINETUNE_STEPS, SEARCH_SAMPLERS, DataConfig, TrainConfig
from nas.data import build_data
from nas.engine import evaluate_arch
from nas.errors import UserError
from searchspace import DEPLOYMENT, Arch, NetSettings, SearchSpace, StageChoice, arch_cost
from searchspace.arch import DEFAULT_POOL_OP
from searchspace.space import StageSpace

FIELDS = ("mixer", "kernel", "depth", "pool")
POOL_OP = "pool_op"  # a parameter only for stages whose space offers a pool op other than patch merging
OBJECTIVES = ("top1", "flops", "latency_ms")
SUGGESTIONS = "suggestions.jsonl"  # every suggestion that became a trial or was rejected, in order
MODES = ("max", "min", "min")


def param_name(stage: int, field_name: str) -> str:
    return f"s{stage + 1}_{field_name}"


def stage_fields(stage: StageSpace) -> tuple[str, ...]:
    """The search parameters of one stage: the default space's four, plus the pool op where offered
    (so a default-space search asks exactly what it always asked, in the same order)."""
    return FIELDS + ((POOL_OP,) if stage.offers_pool_ops else ())


def arch_from_params(params: dict[str, Any], num_stages: int) -> Arch:
    stages = []
    for i in range(num_stages):
        mixer, kernel, depth, pool = (params[param_name(i, f)] for f in FIELDS)
        # The pool op is sampled independently of the ratio; at pool 1 it has no meaning.
        pool_op = params.get(param_name(i, POOL_OP), DEFAULT_POOL_OP) if pool == 2 else DEFAULT_POOL_OP
        stages.append(StageChoice(mixer, kernel, depth, pool, pool_op))
    return Arch(tuple(stages))


@dataclass
class SearchConfig:
    budget_flops: float
    latency_budget_s: float | None = None
    sampler: str = "tpe"
    trials: int = 32
    seed: int = 0
    latency: str = "lut"           # lut | measure
    latency_batch: int = 1
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int = 2
    recalib_batches: int = 8
    finetune_steps: int = FINETUNE_STEPS  # steps each arch trains alone from its inherited weights before evaluation
    ordered: bool = True           # tell results in suggestion order: the same seed gives the same trials

    def to_dict(self) -> dict:
        return asdict(self)


# What a rejected arch is told as latency when no table predicts it (``--latency measure``): finite, because
# Optuna refuses NaN for a complete trial, and the worst a search could see (issue #11). Its constraint
# violation, not this number, is what makes the sampler avoid it.
UNMEASURED_LATENCY_MS = 1e6


class BudgetConstraint:
    """Constraint values for an arch (<= 0 is feasible): FLOPs over budget, latency over budget.

    With a latency table both are known before a trial. Without one (``--latency measure``) the latency
    constraint is known only once the trial has measured it: ``latency_after_trial``.
    """

    def __init__(self, space: SearchSpace, budget_flops: float, latency_budget_s: float | None = None,
                 latency_table=None) -> None:
        self.space, self.budget_flops = space, budget_flops
        self.latency_budget_s, self.latency_table = latency_budget_s, latency_table

    @property
    def latency_after_trial(self) -> bool:
        return self.latency_budget_s is not None and self.latency_table is None

    def flops(self, arch: Arch) -> int:
        return arch_cost(arch, DEPLOYMENT).flops

    def latency_ms(self, arch: Arch) -> float:
        """Predicted latency, or ``UNMEASURED_LATENCY_MS`` without a table."""
        return self.latency_table.predict(arch) * 1e3 if self.latency_table is not None else UNMEASURED_LATENCY_MS

    def violations(self, arch: Arch) -> dict[str, float]:
        """The constraints known before a trial."""
        out = {"flops_over_budget": self.flops(arch) / self.budget_flops - 1.0}
        if self.latency_budget_s is not None and self.latency_table is not None:
            out["latency_over_budget"] = self.latency_table.predict(arch) / self.latency_budget_s - 1.0
        return out

    def screen(self, arch: Arch) -> tuple[dict[str, float], dict | None]:
        """A suggestion's constraint values (set on its Optuna trial) and, when it is over the budget, the
        result it is told instead of running: worst top-1 and finite costs, the constraints making it
        infeasible. A latency that only a trial measures is not held against it."""
        violations = self.violations(arch)
        if max(violations.values()) <= 0:
            return violations, None
        if self.latency_after_trial:
            violations["latency_over_budget"] = 0.0
        return violations, {"top1": 0.0, "flops": self.flops(arch), "latency_ms": self.latency_ms(arch)}

    def measured_violation(self, latency_ms: float) -> float:
        return latency_ms / 1e3 / self.latency_budget_s - 1.0


def make_optuna_sampler(name: str, seed: int, trials: int):
    """Constraint-aware samplers read the values ``BudgetGuard`` sets with ``Trial.set_constraint``."""
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=min(10, max(2, trials // 4)))
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 4)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"unknown sampler {name!r} (choose from {', '.join(SEARCH_SAMPLERS)})")


def tune_search_space(space: SearchSpace) -> dict:
    from ray import tune

    return {param_name(i, f): tune.choice(list(stage.choices(f))) for i, stage in enumerate(space.stages)
            for f in stage_fields(stage)}


# --- the searcher wrapper: over-budget archs never become trials ---------------------------------

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
        self.aliases, self.evaluated = dict(state["aliases"]), dict(state["evaluated"])
        self.pending, self.num_probes = dict(state["pending"]), state["num_probes"]
        # (states saved before issue #11 have no order: they resume unordered)
        self.lag = state.get("lag")
        self.order, self.finished = list(state.get("order", [])), dict(state.get("finished", {}))
        self.told = state.get("told", 0)


# --- the trial ----------------------------------------------------------------------------------

@dataclass
class TrialContext:
    """What every trial needs; reaches the workers once through ``tune.with_parameters``."""
    supernet_state: dict[str, torch.Tensor]
    settings: dict
    space: dict
    data: DataConfig
    config: SearchConfig
    latency_table: Any = None
    fingerprint: str = ""
    recipe: dict | None = None     # the supernet's TrainConfig: what fine-tuning an arch follows


_WORKER_CACHE: dict[str, Any] = {}


def _worker_supernet(ctx: TrialContext):
    """Build the supernet once per worker process (Ray reuses trial actors)."""
    from supernet import MixerNet

    key = f"supernet:{ctx.fingerprint}"
    if key not in _WORKER_CACHE:
        net = MixerNet(SearchSpace.from_dict(ctx.space), NetSettings.from_dict(ctx.settings))
        net.load_state_dict(ctx.supernet_state)
        _WORKER_CACHE.clear()
        _WORKER_CACHE[key] = net.eval()
        _WORKER_CACHE["data"] = build_data(ctx.data)
    return _WORKER_CACHE[key], _WORKER_CACHE["data"]


def trial_metrics(arch: Arch, ctx: TrialContext, device: torch.device) -> dict[str, Any]:
    """Evaluate one arch: costs first, top-1 only if within every budget."""
    cost = arch_cost(arch, DEPLOYMENT)
    cfg = ctx.config
    measuring = cfg.latency == "measure"
    if measuring:
        from nas.latency import device_lock, measure_latency
        from supernet import MixerNet
        net = MixerNet.from_arch(arch, DEPLOYMENT)
        with device_lock(device, exclusive=True):  # no other trial's kernels on this device while timing
            latency = measure_latency(net, DEPLOYMENT, batch_size=cfg.latency_batch, device=device)
        del net
    else:
        latency = ctx.latency_table.predict(arch)
    metrics = {"flops": cost.flops, "params": cost.params, "latency_ms": latency * 1e3, "arch": arch.key()}
    if cfg.latency_budget_s is not None and latency > cfg.latency_budget_s:
        return {**metrics, "top1": 0.0, "feasible": 0, "state": "over_latency_budget"}
    supernet, data = _worker_supernet(ctx)
    with (device_lock(device, exclusive=False) if measuring else contextlib.nullcontext()):
        supernet = supernet.to(device)
        top1 = evaluate_arch(supernet, arch, data, recalib_batches=cfg.recalib_batches, seed=cfg.seed,
                             device=device, finetune_steps=cfg.finetune_steps,
                             recipe=TrainConfig(**ctx.recipe) if ctx.recipe else None)["top1"]
    return {**metrics, "top1": top1, "feasible": 1, "state": "completed"}


def evaluate_trial(config: dict, ctx: TrialContext) -> None:
    """The Ray Tune function trainable: one arch, one report."""
    from ray import tune

    torch.set_num_threads(max(1, int(ctx.config.cpus_per_trial)))
    device = torch.device("cuda" if ctx.config.gpus_per_trial > 0 and torch.cuda.is_available() else "cpu")
    arch = arch_from_params(config, len(ctx.space["stages"]))
    tune.report(trial_metrics(arch, ctx, device))


# --- the driver ---------------------------------------------------------------------------------

def _trial_reporter():
    from ray.tune import Callback

    class TrialLines(Callback):
        """One line per finished trial: what a person watching the terminal wants."""

        def __init__(self, total: int) -> None:
            self.total, self.done, self.start = total, 0, time.perf_counter()

        def on_trial_complete(self, iteration, trials, trial, **info):
            # restored trials count too; this one is not marked terminated yet when Tune calls back
            self.done = 1 + sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial)
            r = trial.last_result or {}
            rate = self.done / max(time.perf_counter() - self.start, 1e-9) * 60
            print(f"[{self.done:>3}/{self.total}] {r.get('arch', '?'):<34} top1 {r.get('top1', float('nan')):.4f}  "
                  f"{r.get('flops', 0) / 1e9:6.2f} GFLOPs  {r.get('latency_ms', float('nan')):7.1f} ms  "
                  f"({rate:.1f} trials/min)", flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.done = 1 + sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial)
            print(f"[{self.done:>3}/{self.total}] trial {trial.trial_id} failed (recorded; the search goes on)",
                  flush=True)

    return TrialLines


def run_search(ctx: TrialContext, run_dir: Path, *, resume: bool = False, address: str | None = None,
               trainable=evaluate_trial) -> tuple[list[dict], bool]:
    """Run (or resume) the Ray Tune search in ``run_dir``. Returns one row per trial and rejection,
    and whether the search is complete (False after Ctrl-C: Tune saved its state; resume later)."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from nas.raysession import (check_fits_local_ray, ensure_ray, reuse_idle_trial_actors,
                                save_tune_state_on_trial_events)

    # Write the experiment state after every trial event, so a killed search loses no trial; never while the last
    # state is still being copied to the run folder.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")
    save_tune_state_on_trial_events()
    cfg = ctx.config
    space = SearchSpace.from_dict(ctx.space)
    ensure_ray(address)
    if not address:
        check_fits_local_ray(cpus=cfg.cpus_per_trial, gpus=cfg.gpus_per_trial)
    storage = (run_dir / "ray").resolve()
    name = "tune"
    trainable = tune.with_parameters(trainable, ctx=ctx)
    resources = {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial}
    trainable = tune.with_resources(trainable, resources)
    experiment = storage / name
    if resume:
        if not tune.Tuner.can_restore(str(experiment)):
            raise UserError(f"{run_dir}: no interrupted search to resume here")
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
    else:
        constraint = BudgetConstraint(space, cfg.budget_flops, cfg.latency_budget_s,
                                      ctx.latency_table if cfg.latency == "lut" else None)
        optuna_search = OptunaSearch(metric=list(OBJECTIVES), mode=list(MODES),
                                     sampler=make_optuna_sampler(cfg.sampler, cfg.seed, cfg.trials),
                                     seed=cfg.seed)
        guard = BudgetGuard(optuna_search, constraint, run_dir / SUGGESTIONS,
                            ordered_concurrency=cfg.max_concurrent if cfg.ordered else None)
        searcher = ConcurrencyLimiter(guard, max_concurrent=cfg.max_concurrent)
        tuner = tune.Tuner(
            trainable,
            param_space=tune_search_space(space),
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=cfg.trials, reuse_actors=True),
            run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0,
                                      callbacks=[_trial_reporter()(cfg.trials)],
                                      failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)),
        )
    with reuse_idle_trial_actors():
        results = tuner.fit()
    rows = []
    for result in results:
        if not result.config:  # interrupted as it started: nothing ran or was saved; resume runs it
            continue
        m = result.metrics or {}
        trial_id = m.get("trial_id") or (result.path and Path(result.path).name)
        arch = arch_from_params(result.config, space.num_stages)
        if result.error is not None or "top1" not in m:
            # no error and no result: the trial was running when the search was interrupted
            state = "error" if result.error is not None else "interrupted"
            cost = arch_cost(arch, DEPLOYMENT)
            rows.append({"trial": trial_id, "arch": arch.key(), "top1": None, "flops": cost.flops,
                         "params": cost.params, "latency_ms": None, "state": state,
                         "error": first_line(result.error) if result.error else "",
                         "stages": arch.to_dict()["stages"]})
            continue
        rows.append({"trial": trial_id, "arch": arch.key(), "top1": m["top1"], "flops": m["flops"],
                     "params": m["params"], "latency_ms": m["latency_ms"], "state": m["state"], "error": "",
                     "stages": arch.to_dict()["stages"]})
    finished = sum(r["state"] != "interrupted" for r in rows) >= cfg.trials
    rejected_path = run_dir / SUGGESTIONS
    if not rejected_path.exists():  # (the name before issue #11)
        rejected_path = run_dir / "rejected.jsonl"
    suggested: dict[str, int] = {}  # Ray trial id -> its probe number
    if rejected_path.exists():
        seen = set()
        for line in rejected_path.read_text().splitlines():
            rec = json.loads(line)
            if rec["state"] == "suggested":
                suggested[rec["trial"]] = probe_number(rec["probe"])
                continue
            if rec["probe"] in seen:
                continue
            seen.add(rec["probe"])
            arch = Arch.from_dict(rec["arch"])
            rows.append({"trial": rec["probe"], "arch": arch.key(), "top1": None, "flops": rec["flops"],
                         "params": arch_cost(arch, DEPLOYMENT).params,
                         # (files from before issue #11 hold NaN where no table predicted the latency)
                         "latency_ms": None if rec["latency_ms"] is None or math.isnan(rec["latency_ms"])
                         else rec["latency_ms"],
                         "state": rec["state"], "error": "", "stages": rec["arch"]["stages"]})
    # Suggestion order, rejections included (runs from before the order was logged: by trial id, after the rest).
    rows.sort(key=lambda r: (suggested.get(r["trial"], probe_number(str(r["trial"]))), str(r["trial"])))
    return rows, finished


def probe_number(probe: str) -> float:
    """The suggestion count in a probe id ``<trial id>~<n>``; infinity for anything else."""
    head, _, tail = probe.rpartition("~")
    return int(tail) if head and tail.isdigit() else math.inf


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    # Ray wraps the trial's exception; its last line names the original error.
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]

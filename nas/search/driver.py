"""The search's driver: one Ray Tune experiment whose trials Optuna proposes (``OptunaSearch``), three objectives.

Objectives: top-1 (max; supernet weights inherited, fine-tuned alone for ``finetune_steps`` steps of the
supernet's recipe, BatchNorm recalibrated, validation split), FLOPs (min; deployment setting, exact analytic count)
and latency (min; LUT prediction or measurement on this device). Hard budgets: an over-budget arch is rejected by
``BudgetGuard`` before Ray ever starts a trial for it: Optuna is told it is infeasible (so its sampler learns), the
rejection is logged, and nothing is evaluated. A trial's work lives in ``nas.search.trial``; the Optuna search
space is declarative (no computation in a define-by-run function).

Reproducibility: by default results are told to the sampler in suggestion order (``BudgetGuard``'s
``ordered_concurrency``), so the same seed, supernet and flags give the same trials in the same order
whichever trial finishes first; measured latencies (``--latency measure``) still vary from run to run.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

from ray import tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from nas.cluster.session import check_fits_local_ray, ensure_ray
from nas.cluster.tune_patches import patched_tune
from nas.errors import UserError, first_line
from nas.runs.layout import suggestions_file
from nas.runs.migrate import migrate
from nas.runs.run import Run
from nas.search.constraints import BudgetConstraint
from nas.search.guard import MODES, BudgetGuard, objective_names
from nas.search.outputs import trial_row
from nas.search.params import arch_from_params, seed_model_points, tune_search_space
from nas.search.samplers import make_optuna_sampler
from nas.search.score import SCORES, Score
from nas.search.trial import Evaluations, TrialContext, evaluate_trial
from nas.search.tune_state import bundle_saved_state, restore_saved_state
from searchspace import DEPLOYMENT, Arch, arch_cost

TUNE_EXPERIMENT = "tune"  # the Tune experiment's folder under the run's storage


def _trial_reporter():
    class TrialLines(tune.Callback):
        """One line per finished trial: what a person watching the terminal wants."""

        def __init__(self, total: int, score: Score) -> None:
            self.total, self.done, self.start, self.score = total, 0, time.perf_counter(), score

        def on_trial_complete(self, iteration, trials, trial, **info):
            # restored trials count too; this one is not marked terminated yet when Tune calls back
            self.done = 1 + sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial)
            r = trial.last_result or {}
            rate = self.done / max(time.perf_counter() - self.start, 1e-9) * 60
            kept = "  (kept: evaluated before the driver restarted)" if r.get("kept") else ""
            score = "" if self.score.key == "top1" else f"  {self.score.key} {r.get(self.score.key, float('nan')):.4f}"
            print(f"[{self.done:>3}/{self.total}] {r.get('arch', '?'):<34} top1 {r.get('top1', float('nan')):.4f}"
                  f"{score}  "
                  f"{r.get('flops', 0) / 1e9:6.2f} GFLOPs  {r.get('latency_ms', float('nan')):7.1f} ms  "
                  f"({rate:.1f} trials/min){kept}", flush=True)

        def on_trial_recover(self, iteration, trials, trial, **info):
            # Tune counts this failure before it calls back; FailureConfig(max_failures) allows that many retries
            print(f"[{self.done:>3}/{self.total}] trial {trial.trial_id} failed (its process or node was lost?): "
                  f"running it again, retry {trial.num_failures}", flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.done = 1 + sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial)
            print(f"[{self.done:>3}/{self.total}] trial {trial.trial_id} failed (recorded; the search goes on)",
                  flush=True)

    return TrialLines


def _run_syncer():
    class SyncRunFolder(tune.Callback):
        """The run folder (suggestions, config) reaches the run's storage after every trial event, as Tune's own
        state does, so a driver elsewhere can resume from there. Restored from Tune's state by a driver on another
        machine, the run is that machine's mirror of the folder."""

        def __init__(self, run: Run) -> None:
            self.run = run

        def on_trial_start(self, iteration, trials, trial, **info):
            self.run.sync()

        on_trial_complete = on_trial_error = on_trial_start

        def on_experiment_end(self, trials, **info):
            self.run.sync()

    return SyncRunFolder


def run_search(ctx: TrialContext, run: Run, *, resume: bool = False,
               trainable=evaluate_trial) -> tuple[list[dict], bool]:
    """Run (or resume) the Ray Tune search in ``run``'s folder, on its cluster; Tune keeps its state in the run's
    storage, and the folder reaches it after every trial event. Returns one row per trial and rejection, in
    suggestion order, and whether the search is complete (False after Ctrl-C: Tune saved its state; resume later).
    """
    cfg = ctx.config
    address = run.cluster.address
    ensure_ray(address)
    if not address:
        check_fits_local_ray(cpus=cfg.cpus_per_trial, gpus=cfg.gpus_per_trial)
    run_dir = run.folder
    ctx = replace(ctx, evaluations=Evaluations(run))
    trainable = tune.with_resources(tune.with_parameters(trainable, ctx=ctx),
                                    {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial})
    # The experiment state is saved after every trial event, so a killed search loses no trial; never while the last
    # state is still being copied to the run folder; and each save is kept whole beside it (nas.search.tune_state).
    with patched_tune(save_every_trial_event=True, keep_idle_actors=True,
                      on_state_saved=lambda staging: bundle_saved_state(staging, run)):
        tuner = _restored_tuner(run, trainable) if resume else _new_tuner(ctx, run, trainable)
        with run:
            results = tuner.fit()
    rows = [_trial_row(result, ctx.space.num_stages) for result in results
            if result.config]  # no config: interrupted as it started, nothing ran or was saved; resume runs it
    finished = sum(r["state"] != "interrupted" for r in rows) >= cfg.trials
    suggested, rejected = _read_suggestions(run_dir)
    rows += rejected
    # Suggestion order, rejections included (runs from before the order was logged: by trial id, after the rest).
    rows.sort(key=lambda r: (suggested.get(r["trial"], probe_number(str(r["trial"]))), str(r["trial"])))
    return rows, finished


def _restored_tuner(run: Run, trainable) -> tune.Tuner:
    storage_path, storage_filesystem = run.ray_storage()
    experiment = f"{storage_path}/{TUNE_EXPERIMENT}"
    restore_saved_state(run, experiment, storage_filesystem)  # one whole save, whatever a killed driver left
    if not tune.Tuner.can_restore(experiment, storage_filesystem=storage_filesystem):
        raise UserError(f"{run.folder}: no interrupted search to resume here")
    return tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True, resume_errored=False,
                              restart_errored=False, storage_filesystem=storage_filesystem)


def _new_tuner(ctx: TrialContext, run: Run, trainable) -> tune.Tuner:
    """Optuna's sampler behind the budget guard, at most ``max_concurrent`` trials at once."""
    cfg = ctx.config
    storage_path, storage_filesystem = run.ray_storage()
    constraint = BudgetConstraint(ctx.space, cfg.budget, ctx.latency_table if cfg.latency == "lut" else None)
    optuna_search = OptunaSearch(metric=list(objective_names(cfg.score)), mode=list(MODES),
                                 points_to_evaluate=_first_points(ctx),
                                 sampler=make_optuna_sampler(cfg.sampler, cfg.seed, cfg.trials), seed=cfg.seed)
    guard = BudgetGuard(optuna_search, constraint, run,
                        ordered_concurrency=cfg.max_concurrent if cfg.ordered else None)
    return tune.Tuner(
        trainable,
        param_space=tune_search_space(ctx.space),
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(guard, max_concurrent=cfg.max_concurrent),
                                    num_samples=cfg.trials, reuse_actors=True),
        run_config=tune.RunConfig(name=TUNE_EXPERIMENT, storage_path=storage_path,
                                  storage_filesystem=storage_filesystem, verbose=0,
                                  callbacks=[_trial_reporter()(cfg.trials, SCORES[cfg.score]), _run_syncer()(run)],
                                  failure_config=tune.FailureConfig(max_failures=run.cluster.max_failures,
                                                                    fail_fast=False)),
    )


def _first_points(ctx: TrialContext) -> list[dict] | None:
    """With ``seed_models``: the seed papers' models that are points of the space, suggested before the sampler's."""
    if not ctx.config.seed_models:
        return None
    points, outside = seed_model_points(ctx.space)
    if outside:
        print(f"seed models not in this space, left out: {', '.join(outside)}", flush=True)
    return points or None


def _trial_row(result, num_stages: int) -> dict:
    """The row of a trial that ran: completed, failed, or running when the search was interrupted."""
    m = result.metrics or {}
    trial_id = m.get("trial_id") or (result.path and Path(result.path).name)
    arch = arch_from_params(result.config, num_stages)
    if result.error is None and "top1" in m:
        return trial_row(trial_id, arch, m["state"], top1=m["top1"], neg_loss=m.get("neg_loss"), flops=m["flops"],
                         params=m["params"], latency_ms=m["latency_ms"], node=m.get("node", ""))
    # no error and no result: the trial was running when the search was interrupted
    cost = arch_cost(arch, DEPLOYMENT)
    return trial_row(trial_id, arch, "error" if result.error is not None else "interrupted", flops=cost.flops,
                     params=cost.params, error=first_line(result.error) if result.error else "")


def _read_suggestions(run_dir: Path) -> tuple[dict[str, float], list[dict]]:
    """From the suggestion log: each trial's probe number (its place in suggestion order), and a row per
    suggestion rejected over the budget."""
    log = suggestions_file(run_dir)
    suggested, rejected, seen = {}, [], set()
    if not log.exists():
        return suggested, rejected
    for line in log.read_text().splitlines():
        rec = migrate("suggestion", json.loads(line))
        if rec["state"] == "suggested":
            suggested[rec["trial"]] = probe_number(rec["probe"])
        elif rec["probe"] not in seen:
            seen.add(rec["probe"])
            arch = Arch.from_dict(rec["arch"])
            rejected.append(trial_row(rec["probe"], arch, rec["state"], flops=rec["flops"],
                                      params=arch_cost(arch, DEPLOYMENT).params, latency_ms=rec["latency_ms"]))
    return suggested, rejected


def probe_number(probe: str) -> float:
    """The suggestion count in a probe id ``<trial id>~<n>``; infinity for anything else."""
    head, _, tail = probe.rpartition("~")
    return int(tail) if head and tail.isdigit() else math.inf



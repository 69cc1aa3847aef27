"""Does the supernet rank archs as training them alone would? ``launch.py check-ranking``.

K archs are trained stand-alone (the ``retrain`` recipe, N seeds each, as parallel Ray Tune trials) and their
mean test top-1 is compared with the score the supernet gives them (``--score``, as the search reads it from the
inherited weights after the fine-tuning steps, BatchNorm recalibrated, validation split): Kendall tau-b and
Spearman rho with bootstrap intervals over the archs, and how far the truth itself can be trusted: how well the
seeds agree with each other, and the noise ceiling (the tau a perfect predictor could expect against a mean of this
many seeds, ``nas.ranking.stats.noise_ceiling_tau``). A tau near the ceiling cannot be told from a perfect ranking by
this truth; more seeds raise the ceiling.

Which archs, by a stated rule: ``nas.ranking.arch_sets.band_archs`` draws the space uniformly (seeded), keeps the
distinct archs within the budget (what a search under it can pick), and takes K at evenly spaced FLOPs quantiles
of those. Or a file (``nas.ranking.arch_sets.read_archs_file``).

Stand-alone runs are cached beside the supernet (``<supernet dir>/ranking/standalone/<recipe>/<arch>-seed<s>/``),
so a second check, or one with more archs or seeds, trains only what is new; an interrupted run resumes from its
last epoch. The last check is ``<supernet dir>/ranking/ranking.json`` (also .csv and .png); ``search`` prints it.
"""
from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import replace
from itertools import combinations
from pathlib import Path

from ray.tune import Callback

from nas.data.datasets import build_data
from nas.errors import UserError
from nas.ranking.stats import (best_fraction_agreement, bootstrap_interval, kendall_tau, noise_ceiling_tau,
                               spearman_rho)
from nas.runs import checkpoint as ckpt
from nas.runs.files import write_csv_atomic
from nas.runs.layout import MODEL, RANKING_SUMMARY, ranking_dir
from nas.runs.migrate import migrate
from nas.runs.record import SupernetRecord
from nas.runs.run import Run
from nas.search.score import NEG_LOSS, SCORES, TOP1, Score
from nas.settings import RankingConfig, RetrainJob, TrainConfig
from nas.train.evaluate import evaluate_arch
from nas.train.parallel import retrain_in_parallel
from nas.train.supernet import load_supernet, load_supernet_state
from searchspace import DEPLOYMENT, Arch, arch_cost, atomic_path, write_json_atomic


def _trial_lines(total: int):
    class StandaloneLines(Callback):
        def __init__(self) -> None:
            self.done, self.start = 0, time.perf_counter()

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.done += 1
            r = trial.last_result or {}
            print(f"[{self.done:>3}/{total}] {trial.config['member']}: validation top-1 "
                  f"{r.get('val_top1', float('nan')):.4f} after {r.get('epoch', '?')} epochs "
                  f"({time.perf_counter() - self.start:.0f}s)", flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.done += 1
            print(f"[{self.done:>3}/{total}] {trial.config['member']}: failed (recorded)", flush=True)

    return StandaloneLines()


def check_ranking(supernet_path: str | Path, archs: list[Arch], cfg: RankingConfig, train: TrainConfig, *,
                  run: Run | None = None, rule: str = "", report_dir: str | Path | None = None,
                  state: dict | None = None) -> dict:
    """Train ``archs`` stand-alone (cached), evaluate them with inherited weights, write the report; returns it.

    ``run``: the supernet's ranking folder, in its storage, with the cluster the stand-alone runs go to (default:
    that folder on this machine's own Ray). The report goes to ``report_dir`` (default: the ranking folder, where
    ``search`` looks for the last check); the stand-alone cache is always the supernet's."""
    supernet_path = Path(supernet_path)
    run = run if run is not None else Run(ranking_dir(supernet_path))
    with run:
        return _check_ranking(supernet_path, archs, cfg, train, run, rule, report_dir, state)


def _check_ranking(supernet_path: Path, archs: list[Arch], cfg: RankingConfig, train: TrainConfig, run: Run,
                   rule: str, report_dir: str | Path | None, state: dict | None) -> dict:
    state = state if state is not None else load_supernet_state(supernet_path)
    record = SupernetRecord.from_state(state, supernet_path)
    job = record.job
    for arch in archs:
        record.space.validate(arch)
    out = run.folder.resolve()
    template = RetrainJob({}, job.data, train, job.model)
    standalone = run.beside(out / "standalone" / template.recipe_key())
    _train_standalone(archs, cfg, template, standalone)
    cache = standalone.folder

    supernet = load_supernet(supernet_path, state=state)
    data = build_data(job.data)
    rows = [_arch_row(arch, supernet, data, cfg, job.train, cache) for arch in archs]
    summary = summarize(rows, cfg.seed, SCORES[cfg.score])
    summary.update({
        "supernet": str(supernet_path), "checked": time.strftime("%Y-%m-%d %H:%M:%S"), "rule": rule,
        "config": cfg.to_dict(), "recipe": train.to_dict(), "data": job.data.to_dict(),
        "splits": {"inherited_top1": "validation split (the search's objective), supernet weights"
                                     + (f" fine-tuned alone for {cfg.finetune_steps} steps on the train split"
                                        if cfg.finetune_steps else "") + ", BN recalibrated",
                   "inherited_val_loss": "the same evaluation's cross-entropy",
                   "inherited_train_loss": "the mean training loss of the fine-tuning steps (train split)",
                   "inherited_top1_no_finetune": "validation split, supernet weights as they are, BN recalibrated",
                   "standalone_top1": "test split, mean over seeds, trained alone with the retrain recipe",
                   "standalone_val_top1": "validation split, the same runs"},
        "archs": rows})
    _write_report(Path(report_dir) if report_dir is not None else out, summary)
    return summary


def _train_standalone(archs: list[Arch], cfg: RankingConfig, template: RetrainJob, standalone: Run) -> None:
    """Every arch x seed run missing from the run ``standalone`` (the cache), as parallel Ray Tune trials; a failed
    run raises UserError."""
    cache = standalone.fetch()  # under a URI storage: the runs a check elsewhere trained
    jobs, cached = {}, 0
    for arch in archs:
        for s in range(cfg.seeds):
            name = f"{arch.key()}-seed{s}"
            if (cache / name / MODEL).exists():
                cached += 1
                continue
            jobs[name] = RetrainJob(arch.to_dict(), template.data, replace(template.train, seed=s), template.model)
    total = len(archs) * cfg.seeds
    print(f"{len(archs)} archs x {cfg.seeds} seeds: {cached} stand-alone runs cached in {cache}, {len(jobs)} to "
          f"train ({template.train.epochs} epochs each, {cfg.cpus_per_trial:g} CPUs a trial)", flush=True)
    if not jobs:
        return
    errors = retrain_in_parallel(jobs, standalone, cpus_per_trial=cfg.cpus_per_trial,
                                 name=f"check-ranking-{time.strftime('%Y%m%d-%H%M%S')}",
                                 callbacks=[_trial_lines(len(jobs))])
    if errors:
        raise UserError(f"{len(errors)} of {total} stand-alone runs failed (first: {errors[0]}); run again to retry")


def _arch_row(arch: Arch, supernet, data, cfg: RankingConfig, supernet_recipe: TrainConfig, cache: Path) -> dict:
    """One arch of the report: its inherited scores (fine-tuned as the search does, and as they are) beside its
    stand-alone runs."""
    runs = [ckpt.load(cache / f"{arch.key()}-seed{s}" / MODEL) for s in range(cfg.seeds)]
    inherited = evaluate_arch(supernet, arch, data, recalib_batches=cfg.recalib_batches, seed=cfg.seed,
                              finetune_steps=cfg.finetune_steps, recipe=supernet_recipe)
    # The weights as the supernet left them, too: does the fine-tuning help on this supernet and data?
    as_is = (evaluate_arch(supernet, arch, data, recalib_batches=cfg.recalib_batches, seed=cfg.seed)
             if cfg.finetune_steps else inherited)
    cost = arch_cost(arch, DEPLOYMENT)
    return {"arch": arch.key(), "flops": cost.flops, "params": cost.params,
            "inherited_top1": inherited["top1"], "inherited_val_loss": inherited["loss"],
            "inherited_train_loss": inherited.get("train_loss"),
            "inherited_top1_no_finetune": as_is["top1"],
            "standalone_top1": statistics.fmean(r["test_top1"] for r in runs),
            "standalone_val_top1": statistics.fmean(r["history"][-1]["val_top1"] for r in runs),
            "standalone_top1_per_seed": [r["test_top1"] for r in runs], "stages": arch.to_dict()["stages"]}


def _write_report(out: Path, summary: dict) -> None:
    """ranking.json, ranking.csv and ranking.png in ``out``."""
    rows = summary["archs"]
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / RANKING_SUMMARY, summary)
    write_csv_atomic(out / "ranking.csv", [{k: v for k, v in r.items() if k != "stages"} for r in rows],
                     ("arch", "flops", "params", "inherited_top1", "inherited_val_loss", "inherited_train_loss",
                      "inherited_top1_no_finetune", "standalone_top1", "standalone_val_top1",
                      "standalone_top1_per_seed"))
    plot_ranking(out / "ranking.png", rows, summary)


def score_values(rows: list[dict], score: Score) -> list[float]:
    """Each row's ``score``, read from its inherited evaluation as the search reads a trial's."""
    return [score.read({"top1": r["inherited_top1"], "loss": r["inherited_val_loss"],
                        "train_loss": r["inherited_train_loss"]}) for r in rows]


def summarize(rows: list[dict], seed: int, score: Score) -> dict:
    """The rank statistics of ``rows``; the headline ones (``kendall_tau``, ``spearman_rho``, ``best_quarter``) of
    ``score``, the one the search maximises."""
    scores = score_values(rows, score)
    loss_sums = score_values(rows, NEG_LOSS)  # None where an arch had no fine-tuning steps
    truth = [r["standalone_top1"] for r in rows]
    per_seed = list(zip(*(r["standalone_top1_per_seed"] for r in rows)))
    seed_taus = [kendall_tau(a, b) for a, b in combinations(per_seed, 2)]
    return {
        "num_archs": len(rows), "num_seeds": len(per_seed), "score": score.name,
        "kendall_tau": kendall_tau(scores, truth),
        "kendall_tau_ci95": bootstrap_interval(kendall_tau, scores, truth, seed=seed),
        "spearman_rho": spearman_rho(scores, truth),
        "spearman_rho_ci95": bootstrap_interval(spearman_rho, scores, truth, seed=seed),
        "top1_tau": kendall_tau(score_values(rows, TOP1), truth),
        # How well one training seed ranks like another: a ceiling on what the truth can confirm.
        "seed_to_seed_tau": statistics.fmean(seed_taus) if seed_taus else None,
        # What a perfect predictor could expect against this truth (nan/None with one seed).
        "noise_ceiling_tau": _finite_or_none(noise_ceiling_tau([r["standalone_top1_per_seed"] for r in rows],
                                                               seed=seed)),
        "neg_flops_tau": kendall_tau([-r["flops"] for r in rows], truth),
        # The same inherited evaluation scored by its validation loss alone, for comparison.
        "neg_val_loss_tau": kendall_tau([-r["inherited_val_loss"] for r in rows], truth),
        # ... and by the validation loss plus the fine-tuning's mean training loss (how fast the arch fit alone);
        # None without fine-tuning; the search's default score. docs/BENCHMARKS.md compares them.
        "neg_val_train_loss_tau": None if None in loss_sums else kendall_tau(loss_sums, truth),
        # Inherited top-1 without the fine-tuning steps (the same as top1_tau when there are none).
        "no_finetune_tau": kendall_tau([r["inherited_top1_no_finetune"] for r in rows], truth),
        # Where a search chooses: the order within the truth's best quarter, and whether its top pick is the best.
        "best_quarter": _finite_values(best_fraction_agreement(scores, truth, 0.25)),
    }


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value  # JSON has no nan


def _finite_values(record: dict) -> dict:
    return {k: _finite_or_none(v) if isinstance(v, float) else v for k, v in record.items()}


def describe_best_quarter(summary: dict) -> str:
    """The best quarter's line: where the supernet puts the truth's best archs and what its own pick is worth."""
    q = summary.get("best_quarter")
    if not q:
        return "best quarter: not measured (a check from before it was reported)"
    tau = "n/a" if q["tau"] is None else f"{q['tau']:.2f}"
    verdict = ("it picks the truth's best" if q["pick_rank"] == 1 else
               f"its pick is the truth's #{q['pick_rank']}, {100 * q['pick_regret']:.2f} points below the best")
    return (f"best quarter ({q['size']} archs by the truth): Kendall tau {tau} within them, {q['shared']} of "
            f"{q['size']} also in the supernet's best {q['size']}; {verdict}")


def describe(summary: dict) -> str:
    lo, hi = summary["kendall_tau_ci95"]
    rlo, rhi = summary["spearman_rho_ci95"]
    seeds, ceiling = summary.get("seed_to_seed_tau"), summary.get("noise_ceiling_tau")
    return (f"Kendall tau {summary['kendall_tau']:.3f} [95% {lo:.2f}, {hi:.2f}], Spearman rho "
            f"{summary['spearman_rho']:.3f} [{rlo:.2f}, {rhi:.2f}] on {summary['num_archs']} archs x "
            f"{summary['num_seeds']} seeds, by the score {SCORES[summary['score']].title}"
            + (f"; seed-to-seed tau {seeds:.2f}" if seeds is not None else "")
            + (f"; noise ceiling {ceiling:.2f}" if ceiling is not None else "")
            + (f" (each arch fine-tuned {_checked_steps(summary)} steps from its inherited weights)"
               if _checked_steps(summary) else " (inherited weights as they are)"))


def _checked_steps(summary: dict) -> int:
    return int(summary["config"]["finetune_steps"])


def last_check(supernet_path: str | Path, finetune_steps: int | None = None, score: str | None = None) -> str:
    """One line on the supernet's last ranking check, for ``search`` to print beside its front (and a warning
    if the check evaluated the archs with another number of fine-tuning steps than ``finetune_steps``, or ordered
    them by another score than ``score``)."""
    path = ranking_dir(supernet_path) / RANKING_SUMMARY
    if not path.exists():
        return (f"supernet ranking: never checked (python launch.py check-ranking --supernet {supernet_path} trains "
                f"archs alone and compares)")
    try:
        summary = migrate("ranking summary", json.loads(path.read_text()))
        line = f"supernet ranking, checked {summary['checked']}: {describe(summary)} ({path})"
        if finetune_steps is not None and finetune_steps != _checked_steps(summary):
            line += (f"\nwarning: that check fine-tuned each arch {_checked_steps(summary)} steps, this search "
                     f"{finetune_steps}: its figures describe another evaluation (check-ranking --finetune-steps "
                     f"{finetune_steps})")
        if score is not None and score != summary["score"]:
            line += (f"\nwarning: that check ordered the archs by --score {summary['score']}, this search maximises "
                     f"{score} (check-ranking --score {score})")
        return line
    except (ValueError, KeyError, TypeError):
        return f"supernet ranking: {path} is unreadable; run check-ranking again"


def plot_ranking(path: Path, rows: list[dict], summary: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), constrained_layout=True)
    score = SCORES[summary["score"]]
    xs = [(100 if score.percent else 1) * v for v in score_values(rows, score)]
    ys = [100 * r["standalone_top1"] for r in rows]
    points = ax.scatter(xs, ys, c=[r["flops"] / 1e9 for r in rows], cmap="viridis", s=40)
    fig.colorbar(points, ax=ax, label="GFLOPs (224x224)")
    for r, x, y in zip(rows, xs, ys):
        spread = [100 * v for v in r["standalone_top1_per_seed"]]
        ax.plot([x, x], [min(spread), max(spread)], c="0.75", lw=1, zorder=0)
        ax.annotate(r["arch"], (x, y), fontsize=5, xytext=(3, 2), textcoords="offset points")
    ax.set_xlabel(f"{score.label}, inherited weights: what the search sees")
    ax.set_ylabel("stand-alone top-1 (%), test split, mean of seeds (bar: range)")
    ax.set_title(describe(summary), fontsize=8)
    ax.grid(alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


__all__ = ["check_ranking", "last_check", "describe", "describe_best_quarter", "score_values", "summarize"]

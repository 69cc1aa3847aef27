"""Search outputs: trials.csv, pareto.json, pareto.png, best.json, and the terminal summary.

The Pareto front and its hypervolume come from Optuna (``Study.best_trials``, ``compute_hypervolume``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume

from nas.runs.files import write_csv_atomic
from nas.search.score import Score
from searchspace import Arch, Budget, Cost, atomic_path, save_arch_file, write_json_atomic

# node: the Ray node that ran the trial's last attempt (a trial whose node was lost ran again elsewhere)
# latency_on: whose device and backend the latency is of (a table built on the deployment machine, or this one)
# neg_loss: minus (validation loss + the fine-tuning steps' mean training loss), the other score (nas.search.score)
CSV_FIELDS = ("trial", "arch", "state", "top1", "neg_loss", "flops", "params", "latency_ms", "latency_on", "node",
              "error", "stages")


def trial_row(trial: str, arch: Arch, state: str, *, flops: float, params: int, top1: float | None = None,
              neg_loss: float | None = None, latency_ms: float | None = None, node: str = "", error: str = "") -> dict:
    """One row of trials.csv (``CSV_FIELDS``): a trial that ran, or a suggestion rejected without running."""
    return {"trial": trial, "arch": arch.key(), "state": state, "top1": top1, "neg_loss": neg_loss, "flops": flops,
            "params": params, "latency_ms": latency_ms, "node": node, "error": error,
            "stages": arch.to_dict()["stages"]}


def feasible_rows(rows: Sequence[dict], budget: Budget, score: Score) -> list[dict]:
    """Completed, scored and within every budget (a defence in depth: over-budget archs never run)."""
    return [r for r in rows if r["state"] == "completed" and r.get(score.key) is not None
            and budget.admits(Cost(r["flops"], r["params"]), latency_s=r["latency_ms"] / 1e3)]


def pareto_front(rows: Sequence[dict], score: Score) -> list[dict]:
    """Non-dominated rows for (score max, FLOPs min, latency min), by Optuna."""
    if not rows:
        return []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    study.add_trials([optuna.trial.create_trial(values=[r[score.key], r["flops"], r["latency_ms"]],
                                                user_attrs={"row": i}, params={}, distributions={})
                      for i, r in enumerate(rows)])
    front = [rows[t.user_attrs["row"]] for t in study.best_trials]
    return sorted(front, key=lambda r: (r["flops"], -r[score.key]))


def hypervolume(rows: Sequence[dict], budget_flops: float, latency_ref_ms: float, score: Score,
                score_ref: float | None = None) -> float:
    """Hypervolume of the rows' front in ((best - score) / (best - score_ref), FLOPs / budget, latency / ref),
    reference (1, 1, 1): the fraction of the budget box the front dominates (for top-1: 1 - top1). Higher is better.
    ``score_ref``: default the score's own (0 for top-1)."""
    if not rows:
        return 0.0
    ref = score.reference_for([r[score.key] for r in rows]) if score_ref is None else score_ref
    span = score.best - ref
    points = np.array([[(score.best - r[score.key]) / span, r["flops"] / budget_flops, r["latency_ms"] / latency_ref_ms]
                       for r in rows])
    points = points[(points < 1.0).all(axis=1)]
    return float(compute_hypervolume(points, np.ones(3))) if len(points) else 0.0


def write_trials_csv(path: Path, rows: Sequence[dict], latency_on: str = "") -> None:
    write_csv_atomic(path, [{**r, "latency_on": latency_on if r["latency_ms"] is not None else "",
                             "stages": json.dumps(r["stages"])} for r in rows], CSV_FIELDS)


def plot_front(path: Path, rows: Sequence[dict], front: Sequence[dict], budget_flops: float,
               latency_budget_ms: float | None, title: str, weights: str, score: Score,
               latency_on: str = "") -> None:
    """pareto.png: the score against FLOPs and against latency (``latency_on``: whose); ``weights`` says which
    weights gave the score."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    evaluated = [r for r in rows if r.get(score.key) is not None and r["state"] == "completed"]
    scale_y = 100 if score.percent else 1
    for ax, key, scale, label, budget in ((axes[0], "flops", 1e-9, "GFLOPs (224x224, batch 1)", budget_flops * 1e-9),
                                          (axes[1], "latency_ms", 1.0,
                                           f"latency (ms){', ' + latency_on if latency_on else ''}",
                                           latency_budget_ms)):
        ax.scatter([r[key] * scale for r in evaluated], [scale_y * r[score.key] for r in evaluated], s=18, c="0.65",
                   label=f"evaluated ({len(evaluated)})")
        pts = sorted(front, key=lambda r: r[key])
        ax.scatter([r[key] * scale for r in pts], [scale_y * r[score.key] for r in pts], s=42, c="tab:red", zorder=3,
                   label=f"Pareto front ({len(front)})")
        if key == "flops":  # the 2-D front of this projection, as a step line
            best, xs, ys = -float("inf"), [], []
            for r in pts:
                if r[score.key] > best:
                    best = r[score.key]
                    xs.append(r[key] * scale)
                    ys.append(scale_y * best)
            ax.step(xs, ys, where="post", c="tab:red", lw=1)
        if budget is not None:
            ax.axvline(budget, ls="--", c="k", lw=1, label="budget")
        ax.set_xlabel(label)
        ax.set_ylabel(f"{score.label}\n{weights}")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def format_table(rows: Sequence[dict], score: Score, limit: int = 12) -> str:
    """The rows as a terminal table; a score other than top-1 gets its own column."""
    other = score.key != "top1"
    lines = [f"{'arch':<34} {'top-1':>7}{f' {score.key:>9}' if other else ''} {'GFLOPs':>7} {'params':>8} "
             f"{'latency':>9}"]
    for r in rows[:limit]:
        lines.append(f"{r['arch']:<34} {100 * r['top1']:6.2f}%{f' {r[score.key]:9.4f}' if other else ''} "
                     f"{r['flops'] / 1e9:7.2f} {r['params'] / 1e6:7.2f}M {r['latency_ms']:7.1f}ms")
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more in pareto.json")
    return "\n".join(lines)


def metrics_of(row: dict) -> dict[str, Any]:
    """What pareto.json and best.json hold of a row: every score it has, and its costs."""
    return {k: row[k] for k in ("top1", "neg_loss", "flops", "params", "latency_ms") if row.get(k) is not None}


def write_search_outputs(run_dir: Path, rows: Sequence[dict], *, budget: Budget, results_root: Path, title: str,
                         score: Score, extra: dict | None = None, search_info: dict | None = None,
                         latency_on: str = "") -> dict:
    """Write every output; returns the summary (front, best, hypervolume). ``latency_on``: whose device and backend
    the latency axis describes, written into each of them; ``score``: what the front and the pick maximise."""
    budget_flops = budget.flops
    latency_budget_ms = None if budget.latency_s is None else budget.latency_s * 1e3
    write_trials_csv(run_dir / "trials.csv", rows, latency_on)
    feasible = feasible_rows(rows, budget, score)
    front = pareto_front(feasible, score)
    latency_ref = latency_budget_ms or max([r["latency_ms"] for r in feasible] or [1.0]) * 1.1
    score_ref = score.reference_for([r[score.key] for r in feasible])
    hv = hypervolume(front, budget_flops, latency_ref, score, score_ref)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    summary = {"budget_flops": budget_flops, "latency_budget_ms": latency_budget_ms, "latency_on": latency_on,
               "counts": counts, "score": score.name,
               "hypervolume": hv, "hypervolume_reference": {score.key: score_ref, "flops": budget_flops,
                                                             "latency_ms": latency_ref},
               "front": [{"arch": r["arch"], "stages": r["stages"], **metrics_of(r)} for r in front], **(extra or {})}
    write_json_atomic(run_dir / "pareto.json", summary)
    plot_front(run_dir / "pareto.png", rows, front, budget_flops, latency_budget_ms, title,
               weights=(extra or {}).get("top1_weights", "inherited weights"), latency_on=latency_on, score=score)
    best = max(feasible, key=lambda r: (r[score.key], -r["flops"]), default=None)
    if best is not None:
        arch = Arch.from_dict({"stages": best["stages"]})
        info = {"name": best["arch"], "metrics": metrics_of(best), "search": {"run": str(run_dir),
                "budget_flops": budget_flops, "latency_budget_ms": latency_budget_ms, **(search_info or {})}}
        save_arch_file(run_dir / "best.json", arch, **info)
        save_arch_file(results_root / "best.json", arch, **info)
    summary["best"] = best
    return summary

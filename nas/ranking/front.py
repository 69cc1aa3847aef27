"""Retrain K members of a search's Pareto front as parallel Ray Tune trials, then compare
supernet-estimated with retrained top-1: did the front hold?"""
from __future__ import annotations

import time
from pathlib import Path

from nas.ranking.stats import kendall_tau
from nas.runs import checkpoint as ckpt
from nas.runs.files import write_csv_atomic
from nas.runs.layout import MODEL
from nas.runs.run import Run
from nas.settings import RetrainJob
from nas.train.parallel import retrain_in_parallel
from searchspace import Arch, atomic_path, write_json_atomic


def retrain_front(members: list[dict], job_template: RetrainJob, run: Run, *, cpus_per_trial: float = 1.0,
                  estimate_weights: str) -> list[dict]:
    """Retrain ``members`` (front entries: stages + top1 + flops) in parallel, each in a folder of ``run``, and
    write the comparison there; returns its rows. ``estimate_weights`` says which weights the members' top1 was
    measured with (a search's ``top1_weights``)."""
    with run:
        return _retrain_front(members, job_template, run, cpus_per_trial, estimate_weights)


def _retrain_front(members: list[dict], job_template: RetrainJob, run: Run, cpus_per_trial: float,
                   estimate_weights: str) -> list[dict]:
    base_dir = run.folder.resolve()
    jobs = {}
    for m in members:
        arch = Arch.from_dict({"stages": m["stages"]})
        job = RetrainJob(arch.to_dict(), job_template.data, job_template.train, job_template.model,
                         job_template.init, job_template.supernet)
        jobs[arch.key()] = job
    start = time.perf_counter()
    errors = retrain_in_parallel(jobs, run, cpus_per_trial=cpus_per_trial, name="retrain-front")
    rows = []
    for m in members:
        key = Arch.from_dict({"stages": m["stages"]}).key()
        model = base_dir / key / MODEL
        row = {"arch": key, "flops": m["flops"], "latency_ms": m.get("latency_ms"), "estimated_top1": m["top1"],
               "retrained_top1": None, "retrained_val_top1": None, "stages": m["stages"]}
        if model.exists():
            saved = ckpt.load(model)
            row["retrained_top1"] = saved["test_top1"]  # what model.pt holds, on the test split
            last = saved["history"][-1]
            row["retrained_val_top1"] = last.get("val_top1_ema", last["val_top1"])
        rows.append(row)
    summary = {"members": rows, "errors": errors, "wall_time_s": time.perf_counter() - start}
    done = [r for r in rows if r["retrained_top1"] is not None]
    summary["kendall_tau"] = kendall_tau([r["estimated_top1"] for r in done], [r["retrained_top1"] for r in done])
    summary["splits"] = {"estimated_top1": f"validation, supernet weights {estimate_weights}",
                         "retrained_top1": "test, the retrained weights model.pt holds",
                         "retrained_val_top1": "validation, the same weights"}
    write_json_atomic(base_dir / "front_retrained.json", summary)
    write_csv_atomic(base_dir / "front_retrained.csv", rows,
                     ("arch", "flops", "latency_ms", "estimated_top1", "retrained_top1", "retrained_val_top1"))
    _plot(base_dir / "front_retrained.png", rows, summary["kendall_tau"], estimate_weights)
    return rows


def _plot(path: Path, rows: list[dict], tau: float, estimate_weights: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.8), constrained_layout=True)
    for r in rows:
        x = r["flops"] / 1e9
        ax.scatter([x], [100 * r["estimated_top1"]], facecolors="none", edgecolors="tab:blue", s=50)
        if r["retrained_top1"] is not None:
            ax.scatter([x], [100 * r["retrained_top1"]], c="tab:red", s=50)
            ax.plot([x, x], [100 * r["estimated_top1"], 100 * r["retrained_top1"]], c="0.7", lw=1, zorder=0)
        ax.annotate(r["arch"], (x, 100 * r["estimated_top1"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.scatter([], [], facecolors="none", edgecolors="tab:blue", label=f"supernet estimate ({estimate_weights})")
    ax.scatter([], [], c="tab:red", label="retrained from scratch")
    ax.set_xlabel("GFLOPs (224x224, batch 1)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"Did the front hold? Kendall tau between estimate and retrained: {tau:.2f}", fontsize=10)
    ax.grid(alpha=0.3)
    # Below the axes: the estimates sit at the bottom of the plot, where a legend inside would hide them.
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=1, frameon=False)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)

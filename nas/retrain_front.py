"""Retrain K members of a search's Pareto front as parallel Ray Tune trials, then compare
supernet-estimated with retrained top-1: did the front hold?"""
from __future__ import annotations

import time
from pathlib import Path

from nas.hub import MODEL
from nas.report import write_csv_atomic
from nas.retrain import RetrainJob
from nas.search import first_line
from nas.stats import kendall_tau
from searchspace import Arch, atomic_path, write_json_atomic


def _retrain_trial(config: dict, jobs: dict, base_dir: str) -> None:
    """One Ray Tune trial: retrain one job in this trial's process (resuming its checkpoint), report every epoch."""
    import torch
    from ray import tune

    from nas.engine import WorkerContext
    from nas.retrain import retrain_worker

    torch.set_num_threads(max(1, int(config["threads"])))
    name = config["member"]
    run_dir = Path(base_dir) / name
    run_dir.mkdir(parents=True, exist_ok=True)

    def report(metrics: dict, checkpoint_path) -> None:
        tune.report({k: v for k, v in metrics.items() if isinstance(v, (int, float))})

    retrain_worker(jobs[name], run_dir, resume=(run_dir / "checkpoint.pt").exists(), context=WorkerContext(),
                   progress=False, on_epoch_end=report)


def retrain_in_parallel(jobs: dict[str, dict], base_dir: Path, *, cpus_per_trial: float = 1.0,
                        address: str | None = None, name: str = "retrain", callbacks=()) -> list[str]:
    """Retrain every job (name -> RetrainJob dict) into ``base_dir/name`` as parallel Ray Tune trials;
    returns the first line of each failed trial's error."""
    from ray import tune

    from nas.raysession import check_fits_local_ray, ensure_ray, save_tune_state_on_trial_events
    from nas.retrain import check_same_job

    save_tune_state_on_trial_events()

    # A trial resumes whatever checkpoint its folder holds: only if it was started with the same job (issue #11).
    for member, job in jobs.items():
        run_dir = Path(base_dir) / member
        check_same_job(run_dir, job)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / "config.json", {"job": job})
    ensure_ray(address)
    if not address:
        check_fits_local_ray(cpus=cpus_per_trial, gpus=0)
    trainable = tune.with_resources(tune.with_parameters(_retrain_trial, jobs=jobs, base_dir=str(base_dir)),
                                    {"cpu": cpus_per_trial})
    # reuse_actors: a finished run's process takes the next run, instead of a new process that imports torch and
    # timm again (several seconds of CPU a run, taken from the runs beside it; docs/BENCHMARKS.md).
    tuner = tune.Tuner(trainable, param_space={"member": tune.grid_search(list(jobs)), "threads": cpus_per_trial},
                       tune_config=tune.TuneConfig(reuse_actors=True),
                       run_config=tune.RunConfig(name=name, storage_path=str(Path(base_dir).resolve() / "ray"),
                                                 verbose=0, callbacks=list(callbacks),
                                                 failure_config=tune.FailureConfig(max_failures=0)))
    return [first_line(r.error) for r in tuner.fit() if r.error is not None]


def retrain_front(members: list[dict], job_template: RetrainJob, base_dir: Path, *, cpus_per_trial: float = 1.0,
                  address: str | None = None, estimate_weights: str) -> list[dict]:
    """Retrain ``members`` (front entries: stages + top1 + flops) in parallel; returns comparison rows.
    ``estimate_weights`` says which weights the members' top1 was measured with (a search's ``top1_weights``)."""
    from nas import checkpoint as ckpt

    base_dir = Path(base_dir).resolve()
    jobs = {}
    for m in members:
        arch = Arch.from_dict({"stages": m["stages"]})
        job = RetrainJob(arch.to_dict(), job_template.data, job_template.train, job_template.model,
                         job_template.init, job_template.supernet)
        jobs[arch.key()] = job.to_dict()
    start = time.perf_counter()
    errors = retrain_in_parallel(jobs, base_dir, cpus_per_trial=cpus_per_trial, address=address,
                                 name="retrain-front")
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

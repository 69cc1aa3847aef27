"""Retrain many archs at once, as parallel Ray Tune trials: the stand-alone runs of a ranking check and of
``retrain --pareto``. One process per slot, reused from run to run (docs/BENCHMARKS.md)."""
from __future__ import annotations

from pathlib import Path

import torch
from ray import tune

from nas.cluster.session import check_fits_local_ray, ensure_ray
from nas.cluster.tune_patches import patched_tune
from nas.errors import first_line
from nas.runs.layout import CHECKPOINT, RUN_CONFIG
from nas.runs.storage import Storage
from nas.settings import MAX_FAILURES, RetrainJob
from nas.train.retrain import check_same_job, retrain_worker
from nas.train.steps import WorkerContext
from searchspace import write_json_atomic


def _retrain_trial(config: dict, jobs: dict[str, RetrainJob], base_dir: str, storage: Storage) -> None:
    """One Ray Tune trial: retrain one job in this trial's process (resuming its checkpoint), report every epoch."""
    torch.set_num_threads(max(1, int(config["threads"])))
    name = config["member"]
    run_dir = storage.here(base_dir) / name
    run_dir.mkdir(parents=True, exist_ok=True)

    def report(metrics: dict, checkpoint_path) -> None:
        tune.report({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        storage.push(run_dir)  # a URI storage has every epoch, whichever node this trial runs on

    if not (run_dir / CHECKPOINT).exists():
        storage.pull(run_dir)  # an epoch this run reached on another node (a URI storage)
    retrain_worker(jobs[name], run_dir, resume=(run_dir / CHECKPOINT).exists(), context=WorkerContext(),
                   progress=False, on_epoch_end=report)
    storage.push(run_dir)


def retrain_in_parallel(jobs: dict[str, RetrainJob], base_dir: Path, *, cpus_per_trial: float = 1.0,
                        address: str | None = None, name: str = "retrain", callbacks=(),
                        max_failures: int = MAX_FAILURES, storage: Storage | None = None) -> list[str]:
    """Retrain every job (name -> job) into ``base_dir/name`` as parallel Ray Tune trials; returns the first line
    of each failed trial's error. A trial that fails starts again (at most ``max_failures`` times) from its last
    epoch's checkpoint. ``storage``: where Ray keeps the runs' state (default: ``base_dir/ray``); under a URI storage
    each trial pushes its folder there every epoch, and the folders are fetched here at the end."""
    base_dir = Path(base_dir).resolve()
    storage = storage or Storage(base_dir)
    storage_path, storage_filesystem = storage.ray_storage(base_dir)

    # A trial resumes whatever checkpoint its folder holds: only if it was started with the same job.
    for member, job in jobs.items():
        run_dir = Path(base_dir) / member
        check_same_job(run_dir, job.to_dict())
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / RUN_CONFIG, {"job": job.to_dict()})
    ensure_ray(address)
    if not address:
        check_fits_local_ray(cpus=cpus_per_trial, gpus=0)
    trainable = tune.with_resources(tune.with_parameters(_retrain_trial, jobs=jobs, base_dir=str(base_dir),
                                                         storage=storage),
                                    {"cpu": cpus_per_trial})
    # reuse_actors: a finished run's process takes the next run, instead of a new process that imports torch and
    # timm again (several seconds of CPU a run, taken from the runs beside it; docs/BENCHMARKS.md).
    tuner = tune.Tuner(trainable, param_space={"member": tune.grid_search(list(jobs)), "threads": cpus_per_trial},
                       tune_config=tune.TuneConfig(reuse_actors=True),
                       run_config=tune.RunConfig(name=name, storage_path=storage_path,
                                                 storage_filesystem=storage_filesystem, verbose=0, callbacks=list(callbacks),
                                                 failure_config=tune.FailureConfig(max_failures=max_failures)))
    with patched_tune():
        errors = [first_line(r.error) for r in tuner.fit() if r.error is not None]
    storage.pull(base_dir)
    return errors

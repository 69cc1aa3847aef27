"""Retrain many archs at once, as parallel Ray Tune trials: the stand-alone runs of a ranking check and of
``retrain --pareto``. One process per slot, reused from run to run (docs/BENCHMARKS.md)."""
from __future__ import annotations

import torch
from ray import tune

from nas.cluster.session import check_fits_local_ray, ensure_ray
from nas.cluster.tune_patches import patched_tune
from nas.errors import first_line
from nas.runs.layout import CHECKPOINT, RUN_CONFIG
from nas.runs.run import Run
from nas.settings import RetrainJob
from nas.train.retrain import check_same_job, retrain_worker
from nas.train.steps import WorkerContext
from searchspace import write_json_atomic


def _retrain_trial(config: dict, jobs: dict[str, RetrainJob], base: Run) -> None:
    """One Ray Tune trial: retrain one job in this trial's process (resuming its checkpoint), report every epoch."""
    torch.set_num_threads(max(1, int(config["threads"])))
    name = config["member"]
    run = base.sub(name)  # base was unpickled here: under a URI storage, this node's mirror
    run_dir = run.folder
    run_dir.mkdir(parents=True, exist_ok=True)

    def report(metrics: dict, checkpoint_path) -> None:
        tune.report({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        run.sync()  # a URI storage has every epoch, whichever node this trial runs on

    if not (run_dir / CHECKPOINT).exists():
        run.fetch()  # an epoch this run reached on another node (a URI storage)
    with run:
        retrain_worker(jobs[name], run_dir, resume=(run_dir / CHECKPOINT).exists(), context=WorkerContext(),
                       progress=False, on_epoch_end=report)


def retrain_in_parallel(jobs: dict[str, RetrainJob], base: Run, *, cpus_per_trial: float = 1.0,
                        name: str = "retrain", callbacks=()) -> list[str]:
    """Retrain every job (name -> job) into the run ``base``'s folder ``<name>`` as parallel Ray Tune trials on its
    cluster; returns the first line of each failed trial's error. A trial that fails starts again (at most the
    cluster's ``max_failures`` times) from its last epoch's checkpoint. Ray keeps the runs' state in the base run's
    storage; under a URI storage each trial sends its folder there every epoch, and the folders are fetched here at
    the end."""
    base = base.beside(base.folder.resolve())  # the trials' processes have other working folders
    storage_path, storage_filesystem = base.ray_storage()

    # A trial resumes whatever checkpoint its folder holds: only if it was started with the same job.
    for member, job in jobs.items():
        run_dir = base.path(member)
        check_same_job(run_dir, job.to_dict())
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / RUN_CONFIG, {"job": job.to_dict()})
    address = base.cluster.address
    ensure_ray(address)
    if not address:
        check_fits_local_ray(cpus=cpus_per_trial, gpus=0)
    trainable = tune.with_resources(tune.with_parameters(_retrain_trial, jobs=jobs, base=base),
                                    {"cpu": cpus_per_trial})
    # reuse_actors: a finished run's process takes the next run, instead of a new process that imports torch and
    # timm again (several seconds of CPU a run, taken from the runs beside it; docs/BENCHMARKS.md).
    tuner = tune.Tuner(trainable, param_space={"member": tune.grid_search(list(jobs)), "threads": cpus_per_trial},
                       tune_config=tune.TuneConfig(reuse_actors=True),
                       run_config=tune.RunConfig(name=name, storage_path=storage_path,
                                                 storage_filesystem=storage_filesystem, verbose=0, callbacks=list(callbacks),
                                                 failure_config=tune.FailureConfig(max_failures=base.cluster.max_failures)))
    with patched_tune():
        errors = [first_line(r.error) for r in tuner.fit() if r.error is not None]
    base.fetch()
    return errors

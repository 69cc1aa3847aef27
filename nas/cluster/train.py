"""Ray Train: the same training loop as DDP workers (gloo on CPU, NCCL on GPU).

Rank 0 writes the same checkpoint.pt into the run folder as a local run does and also reports it
to Ray Train (kept under the run folder's ray/ storage), so a distributed run resumes from a
local one and the other way round. The launcher knows nothing of supernets or retraining: the caller
hands it the worker function to run, so imports go one way (nas.train.supernet / nas.train.retrain -> nas.cluster.train).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from nas.errors import UserError
from nas.runs.layout import CHECKPOINT
from nas.runs.run import Run
from searchspace import atomic_path


def _worker_loop(config: dict) -> None:
    import warnings

    # Depth-wise conv weight gradients come in channels-last layout (NHWC activations); DDP copies
    # them into its buckets, which costs little and is not an error.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    import ray.train
    import ray.train.torch
    import torch
    from torch.utils.data import DistributedSampler

    from nas.train.steps import WorkerContext

    context = ray.train.get_context()
    ctx = WorkerContext(rank=context.get_world_rank(), world_size=context.get_world_size(),
                        device=ray.train.torch.get_device())

    def sampler_factory(dataset, seed):
        return DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed,
                                  drop_last=True)

    def wrap(model):
        return ray.train.torch.prepare_model(
            model, parallel_strategy_kwargs={"find_unused_parameters": config["find_unused_parameters"]})

    def report(metrics: dict, checkpoint_path: Path | None) -> None:
        numeric = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        if checkpoint_path is None:
            ray.train.report(numeric)
            return
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy2(checkpoint_path, Path(tmp) / checkpoint_path.name)
            ray.train.report(numeric, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        run.sync()  # rank 0 (the one with a checkpoint), wherever it runs: a URI storage has the epoch

    run = config["run"]  # unpickled here: under a URI storage, its folder is this node's mirror of the run
    run.fetch()  # ... as the storage has it (a resumed run's checkpoint, from wherever it was written)
    run_dir = run.folder
    resume = config["resume"] or _restarted(run_dir, config["started"])
    torch.set_num_threads(max(1, config["threads_per_worker"]))
    config["worker"](config["job"], run_dir, resume=resume, context=ctx,
                     progress=ctx.rank == 0, wrap_model=wrap, sampler_factory=sampler_factory, on_epoch_end=report)
    if ctx.rank == 0:
        run.sync()  # the final weights, written by rank 0 on its node


def _restarted(run_dir: Path, started: float) -> bool:
    """Whether this worker group was started again after a worker died, with a checkpoint to continue from: Ray
    Train's last reported one (copied into the run folder, where the trainer reads it, in case this node had none),
    else the run folder's own when this run wrote it (a worker that died right after its report may have died
    before Ray registered the checkpoint)."""
    import ray.train

    restored = ray.train.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            with atomic_path(run_dir / CHECKPOINT) as tmp:
                shutil.copy2(Path(folder) / CHECKPOINT, tmp)
        return True
    path = run_dir / CHECKPOINT
    return path.exists() and path.stat().st_mtime >= started


def run_ray_train(worker: Callable[..., object], job: object, run: Run, *, resume: bool, num_workers: int,
                  use_gpu: bool, find_unused_parameters: bool = False) -> None:
    """Run ``worker(job, run_dir, resume=, context=, progress=, wrap_model=, sampler_factory=, on_epoch_end=)``
    as ``num_workers`` DDP workers under Ray Train's TorchTrainer, on ``run``'s cluster.

    ``worker`` is a module-level function (it travels to the workers by reference). ``find_unused_parameters``:
    a supernet step trains one path, so the other paths' parameters get no gradient; a standalone network uses
    every parameter, and DDP's search for unused ones would only cost time. A worker that dies (its process, its
    node) makes Ray Train start the group again, at most ``run.cluster.max_failures`` times, from the last epoch's
    checkpoint. Ray Train keeps its state and reported checkpoints in the run's storage; under a URI storage rank 0
    sends the run folder there every epoch and this process fetches it at the end, so a worker on a node without
    the driver's disk still hands back its files.
    """
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from nas.cluster.session import check_fits_local_ray, ensure_ray

    address = run.cluster.address
    ensure_ray(address=address)
    cpus = ray.cluster_resources().get("CPU", 1)
    if not use_gpu and num_workers > cpus:
        raise UserError(f"--num-workers {num_workers} needs {num_workers} CPUs; the Ray cluster has {cpus:g}")
    if not address:  # the local Ray holds what it holds: workers it cannot place would wait forever
        check_fits_local_ray(cpus=0, gpus=num_workers if use_gpu else 0, gpus_flag="--gpu")
    run_dir = run.folder.resolve()
    storage_path, storage_filesystem = run.ray_storage()
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"worker": worker, "job": job, "run": run.beside(run_dir), "resume": resume,
                           "started": time.time(),  # a checkpoint written since: a restart continues from it
                           "find_unused_parameters": find_unused_parameters,
                           "threads_per_worker": max(1, int(cpus // num_workers))},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name=run_dir.name, storage_path=storage_path, storage_filesystem=storage_filesystem,
                             failure_config=FailureConfig(max_failures=run.cluster.max_failures)),
    )
    result = trainer.fit()
    run.fetch()
    if result.error:
        raise result.error

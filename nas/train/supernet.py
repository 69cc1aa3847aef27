"""Train the weight-sharing supernet: in this process, or as Ray Train DDP workers.

A run folder holds ``config.json``, ``checkpoint.pt`` (every epoch, atomic), ``metrics.csv`` and,
when training completes, ``supernet.pt`` (weights and the :class:`~nas.runs.record.SupernetRecord`: job, space,
settings; what the search loads).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from nas.cluster.train import run_ray_train
from nas.data.datasets import build_data
from nas.data.splits import DataBundle
from nas.errors import UserError
from nas.runs import checkpoint as ckpt
from nas.runs.layout import CHECKPOINT, RUN_CONFIG, SUPERNET
from nas.runs.record import SUPERNET_RECORD, SupernetRecord
from nas.runs.run import Run
from nas.settings import SupernetJob
from nas.train.steps import WorkerContext, local_device, unwrap
from nas.train.trainer import Trainer
from searchspace import DEPLOYMENT, NetSettings, SearchSpace, dearest_arch_within, extreme_archs, write_json_atomic
from supernet import MixerNet, make_path_sampler


def train_supernet_worker(job: SupernetJob, run_dir: Path, *, resume: bool, context: WorkerContext,
                          progress: bool = True, wrap_model=None, sampler_factory=None, on_epoch_end=None,
                          data: DataBundle | None = None) -> list[dict]:
    """One worker's whole run. ``wrap_model`` (DDP) and ``sampler_factory`` come from Ray Train; ``data``, when
    the caller has built it already (a run in this process)."""
    ckpt.seed_everything(job.train.seed)
    data = data if data is not None else build_data(job.data)
    settings = job.model.settings(data)
    model = MixerNet(job.space, settings).to(context.device)
    if wrap_model is not None:
        model = wrap_model(model)
    # Every worker draws the same paths (same seed), so DDP reduces the same parameters everywhere.
    sampler = make_path_sampler(job.path_sampler, job.space, job.train.seed, job.path_budget_flops)
    record = SupernetRecord(job, job.space, settings).to_state()
    trainer = Trainer(model, data, job.train, run_dir, path_sampler=sampler,
                      eval_archs=monitor_archs(job.space, job.path_budget_flops), context=context, progress=progress,
                      extra_state=record, on_epoch_end=on_epoch_end, distributed_sampler_factory=sampler_factory,
                      inplace_distill=job.inplace_distill)
    history = trainer.fit(resume=resume)
    if context.is_main:
        ckpt.save_atomic({"model": unwrap(model).state_dict(), **record, "history": history}, run_dir / SUPERNET)
    return history


def monitor_archs(space: SearchSpace, path_budget_flops: float | None) -> dict:
    """The archs whose inherited validation top-1 every supernet epoch reports: the cheapest and the dearest
    arch the supernet trains (within its path budget: the sandwich's largest there too)."""
    smallest, largest = extreme_archs(space, DEPLOYMENT)
    if path_budget_flops is not None:
        largest = dearest_arch_within(space, DEPLOYMENT, path_budget_flops) or largest
    return {"largest": largest, "smallest": smallest}


def train_supernet(job: SupernetJob, run: Run, *, resume: bool = False, num_workers: int = 0,
                   use_gpu: bool = False, progress: bool = True) -> Path:
    """Train (or resume) the supernet of ``job`` in ``run``'s folder; returns the path of supernet.pt. Every epoch
    reaches the run's storage. On the run's cluster (or with several workers) it trains under Ray Train, where a
    worker that dies makes the run start again from its last epoch."""
    data = build_data(job.data)  # a missing or malformed dataset fails here, before anything is written
    distributed = num_workers > 1 or run.cluster.address is not None  # on a cluster, even one worker runs there
    device = None if distributed else local_device(use_gpu)  # no GPU here: refused before anything is written
    run_dir = run.folder
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / RUN_CONFIG
    if resume and config_path.exists():
        saved = json.loads(config_path.read_text())["job"]
        if saved != job.to_dict():
            raise UserError(f"{run_dir}: --resume with different settings than the run was started with "
                            f"(see {config_path})")
    write_json_atomic(config_path, {"job": job.to_dict(), "num_workers": num_workers, "use_gpu": use_gpu,
                                    "torch": torch.__version__, "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    with run:
        if distributed:  # each worker process builds its own data
            run_ray_train(train_supernet_worker, job, run, resume=resume, num_workers=num_workers, use_gpu=use_gpu,
                          find_unused_parameters=True)
        else:
            train_supernet_worker(job, run_dir, resume=resume, context=WorkerContext(device=device),
                                  progress=progress, data=data, on_epoch_end=lambda metrics, saved: run.sync())
    return run_dir / SUPERNET


def load_supernet_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A supernet checkpoint's content (model, space, settings, job); UserError for any other file."""
    state = ckpt.load(path, map_location=map_location)
    if not all(key in state for key in ("model", *SUPERNET_RECORD)):
        raise UserError(f"{path}: not a supernet checkpoint")
    return state


def load_supernet(path: str | Path, device: str | torch.device = "cpu", *, state: dict | None = None) -> MixerNet:
    """A trained supernet from its supernet.pt (or an epoch checkpoint.pt), or from its already loaded ``state``."""
    state = state if state is not None else ckpt.load(path, map_location=device)
    net = MixerNet(SearchSpace.from_dict(state["space"], source=f"{path} space"), NetSettings.from_dict(state["settings"]))
    net.load_state_dict(state["model"])
    return net.to(device).eval()


__all__ = ["train_supernet", "train_supernet_worker", "load_supernet", "load_supernet_state", "monitor_archs",
           "SUPERNET", "CHECKPOINT"]

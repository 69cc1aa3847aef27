"""Retrain a searched arch from scratch (or from its inherited supernet weights).

A retrain folder holds ``config.json``, ``arch.json``, ``checkpoint.pt`` (every epoch, atomic),
``metrics.csv`` (per epoch: validation top-1), and at the end ``model.pt`` (weights + arch + settings: what
``nas.hub.load_model`` and ``launch.py export`` read) and ``metrics.json``.

Splits: every epoch is evaluated on the validation split (carved from the training data), and any "best
epoch" is chosen there. The test split is read once, at the end, for the reported top-1 of the weights that
``model.pt`` holds (the last epoch's, or the EMA's with ``--ema``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from nas.cluster.train import run_ray_train
from nas.data.datasets import build_data
from nas.errors import UserError
from nas.latency import timing
from nas.runs import checkpoint as ckpt
from nas.runs.layout import MODEL, RUN_CONFIG
from nas.runs.migrate import migrate
from nas.runs.run import Run
from nas.settings import RetrainJob
from nas.train.evaluate import evaluate
from nas.train.steps import WorkerContext, local_device
from nas.train.supernet import load_supernet
from nas.train.trainer import Trainer
from searchspace import DEPLOYMENT, Arch, NetSettings, arch_cost, save_arch_file, write_json_atomic
from supernet import MixerNet, num_params


def build_network(job: RetrainJob, settings: NetSettings) -> MixerNet:
    arch = Arch.from_dict(job.arch)
    if job.init == "scratch":
        return MixerNet.from_arch(arch, settings)
    supernet = load_supernet(job.supernet)
    if supernet.settings != settings:
        raise UserError(f"{job.supernet}: the supernet was trained at {supernet.settings}, not at {settings}")
    return supernet.extract(arch).train()


def retrain_worker(job: RetrainJob, run_dir: Path, *, resume: bool, context: WorkerContext, progress: bool = True,
                   wrap_model=None, sampler_factory=None, on_epoch_end=None) -> list[dict]:
    ckpt.seed_everything(job.train.seed)
    data = build_data(job.data)
    settings = job.model.settings(data)
    model = build_network(job, settings).to(context.device)
    core = model
    if wrap_model is not None:
        model = wrap_model(model)
    trainer = Trainer(model, data, job.train, run_dir, context=context, progress=progress,
                      extra_state={"settings": settings.to_dict(), "arch": job.arch, "job": job.to_dict()},
                      on_epoch_end=on_epoch_end, distributed_sampler_factory=sampler_factory)
    history = trainer.fit(resume=resume)
    if context.is_main:
        saved = trainer.ema.module if trainer.ema else core
        # The final report, and the only read of the test split.
        test = evaluate(saved, data.test, batch_size=job.train.eval_batch_size, device=context.device)
        ckpt.save_atomic({"model": saved.state_dict(), "arch": job.arch, "settings": settings.to_dict(),
                          "job": job.to_dict(), "history": history, "test_top1": test["top1"],
                          "test_loss": test["loss"]}, Path(run_dir) / MODEL)
    return history


def check_same_job(run_dir: Path, job_dict: dict) -> None:
    """Refuse to resume ``run_dir`` with another job than the one it was started with (its config.json)."""
    config_path = Path(run_dir) / RUN_CONFIG
    if not config_path.exists():
        return
    try:
        saved = migrate("retrain job", json.loads(config_path.read_text())["job"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{config_path}: unreadable; remove {run_dir} to start it again") from None
    if saved != job_dict:
        raise UserError(f"{run_dir}: resuming with different settings than the run was started with ({config_path}); "
                        f"use the same flags, or another --run-dir")


def retrain(job: RetrainJob, run: Run, *, resume: bool = False, num_workers: int = 1, use_gpu: bool = False,
            progress: bool = True, measure_latency: bool = True) -> dict:
    """Train ``job`` in ``run``'s folder, every epoch reaching the run's storage (in this process, or under Ray
    Train on the run's cluster, where a worker that dies makes the run start again from its last epoch); returns
    metrics.json's content."""
    run_dir = run.folder
    arch = Arch.from_dict(job.arch)
    build_data(job.data)  # a missing dataset fails before anything is written
    distributed = num_workers > 1 or run.cluster.address is not None  # on a cluster, even one worker runs there
    device = None if distributed else local_device(use_gpu)  # no GPU here: refused before anything is written
    if job.init == "supernet" and not (job.supernet and Path(job.supernet).is_file()):
        raise UserError(f"--init supernet: no supernet checkpoint at {job.supernet}")
    config_path = run_dir / RUN_CONFIG
    if resume:
        check_same_job(run_dir, job.to_dict())
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(config_path, {"job": job.to_dict(), "num_workers": num_workers, "use_gpu": use_gpu,
                                    "torch": torch.__version__})
    save_arch_file(run_dir / "arch.json", arch, name=arch.key())
    with run:
        start = time.perf_counter()
        if distributed:
            run_ray_train(retrain_worker, job, run, resume=resume, num_workers=num_workers, use_gpu=use_gpu)
        else:
            retrain_worker(job, run_dir, resume=resume, context=WorkerContext(device=device), progress=progress,
                           on_epoch_end=lambda metrics, saved: run.sync())
        wall = time.perf_counter() - start
        return _write_metrics(job, arch, run_dir, wall, num_workers, measure_latency)


def _write_metrics(job: RetrainJob, arch: Arch, run_dir: Path, wall: float, num_workers: int,
                   measure_latency: bool) -> dict:
    """metrics.json of a finished run: its test top-1 (read once, in model.pt), validation history and costs."""
    state = ckpt.load(run_dir / MODEL)
    history = state["history"]
    key = "val_top1_ema" if job.train.ema_decay else "val_top1"
    cost = arch_cost(arch, DEPLOYMENT)
    metrics = {
        "arch": arch.to_dict(), "name": arch.key(),
        "test_top1": state["test_top1"], "val_top1": history[-1][key],
        "best_val_top1": max(r[key] for r in history), "best_epoch": max(history, key=lambda r: r[key])["epoch"],
        "weights": "ema" if job.train.ema_decay else "last epoch",
        "splits": {"test_top1": "test split, read once for this report",
                   "val_top1": "validation split (carved from the training data), last epoch",
                   "best_val_top1": "validation split, best epoch (chosen there, never on test)"},
        "params": num_params(MixerNet.from_arch(arch, NetSettings.from_dict(state["settings"]))),
        "params_deployment": cost.params, "flops_deployment": cost.flops,
        "latency_ms_deployment": None, "wall_time_s": wall, "epochs": len(history),
        "config": {"job": job.to_dict(), "settings": state["settings"], "num_workers": num_workers},
    }
    if measure_latency:
        net = MixerNet.from_arch(arch, DEPLOYMENT)
        metrics["latency_ms_deployment"] = 1e3 * timing.measure_latency(net, DEPLOYMENT, repeats=5)
        metrics["latency_device"] = timing.device_tag("cpu", 1)
    write_json_atomic(run_dir / "metrics.json", metrics)
    return metrics


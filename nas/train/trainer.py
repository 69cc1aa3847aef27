"""The training loop shared by supernet training and retraining.

Built from timm's factories: AdamW (``create_optimizer_v2``), cosine schedule with warm-up
(``create_scheduler_v2``, stepped per update), label smoothing / soft-target losses, Mixup/CutMix,
model EMA and gradient clipping. A supernet step runs the paths its ``PathSampler`` gives
(gradients accumulated over them); a standalone network runs its single path.

Every epoch ends with an atomic checkpoint holding model, optimizer, scheduler, EMA, path
sampler, every RNG state and the history; the data order of epoch e depends only on
(seed, e), so ``--resume`` continues exactly where a run stopped.
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import torch
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from nas.data.folders import take_unreadable
from nas.data.loaders import make_loader
from nas.data.splits import DataBundle
from nas.errors import UserError
from nas.runs import checkpoint as ckpt
from nas.runs.files import write_csv_atomic
from nas.runs.layout import CHECKPOINT, METRICS
from nas.settings import TrainConfig
from nas.train.evaluate import evaluate, evaluate_arch
from nas.train.steps import WorkerContext, apply_gradients, autocast, hard_label_loss, unwrap
from searchspace import Arch
from supernet import PathSampler

HOST_READ_EVERY = 8  # training steps between reads of the loss on the host (see Trainer.train_epoch)
# A run whose first steps say it will take longer than this says so, with the flags that make it smaller: a
# 224 px image folder on a CPU takes hours an epoch, and a user should not learn that from the progress bar alone.
SLOW_RUN_S = 3600.0


class Trainer:
    """Trains ``model`` (a MixerNet, possibly DDP-wrapped) on ``data`` for ``cfg.epochs`` epochs.

    ``path_sampler`` makes this supernet training; without it the model's own path is trained. With
    ``inplace_distill`` the first path of each step (the sandwich's largest) learns from the labels and every other
    path from its predictions (BigNAS / OFA in-place distillation: soft targets, no separate teacher).
    ``eval_archs`` (name -> arch) are evaluated with inherited weights after each supernet epoch.
    ``on_epoch_end(metrics, checkpoint_path)`` lets a caller (Ray Train) report each epoch.
    """

    def __init__(self, model: nn.Module, data: DataBundle, cfg: TrainConfig, run_dir: str | os.PathLike, *,
                 path_sampler: PathSampler | None = None, eval_archs: dict[str, Arch] | None = None,
                 context: WorkerContext | None = None, progress: bool = True, extra_state: dict | None = None,
                 on_epoch_end: Callable[[dict, Path | None], None] | None = None,
                 distributed_sampler_factory: Callable[[Dataset, int], Iterable] | None = None,
                 inplace_distill: bool = False) -> None:
        self.model, self.data, self.cfg = model, data, cfg
        self.inplace_distill = inplace_distill
        self.run_dir = Path(run_dir)
        self.path_sampler, self.eval_archs = path_sampler, eval_archs or {}
        self.ctx = context or WorkerContext()
        self.progress = progress and self.ctx.is_main
        self.extra_state = extra_state or {}
        self.on_epoch_end = on_epoch_end
        self.sampler_factory = distributed_sampler_factory
        if cfg.amp == "fp16" and self.ctx.device.type != "cuda":
            raise UserError("--amp fp16 needs a CUDA device (its gradient scaler is CUDA's); --amp bf16 runs "
                            "on CPU too")

        self.steps_per_epoch = self._steps_per_epoch()
        self.optimizer = create_optimizer_v2(unwrap(model), opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer, sched="cosine", num_epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs,
            warmup_lr=cfg.lr * 0.01, min_lr=cfg.min_lr, step_on_epochs=False, updates_per_epoch=self.steps_per_epoch)
        self.mixup = None
        if cfg.mixup > 0 or cfg.cutmix > 0:
            self.mixup = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.label_smoothing,
                               num_classes=data.num_classes)
            self.loss_fn: nn.Module = SoftTargetCrossEntropy()
        else:
            self.loss_fn = hard_label_loss(cfg.label_smoothing)
        self.distill_loss = SoftTargetCrossEntropy()
        self.ema = ModelEmaV3(unwrap(model), decay=cfg.ema_decay) if cfg.ema_decay else None
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None  # bf16 has float32's range
        self.start_epoch, self.history = 0, []

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self, epoch: int) -> dict:
        return {
            "epoch": epoch,  # epochs completed
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "path_sampler": self.path_sampler.state_dict() if self.path_sampler else None,
            "rng": ckpt.rng_state(),
            "history": self.history,
            "train_config": self.cfg.to_dict(),
            **self.extra_state,
        }

    def resume(self, path: str | os.PathLike) -> None:
        state = ckpt.load(path, map_location=self.ctx.device)
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.path_sampler and state.get("path_sampler"):
            self.path_sampler.load_state_dict(state["path_sampler"])
        ckpt.set_rng_state(state["rng"])
        self.start_epoch, self.history = state["epoch"], list(state["history"])

    # -- loop -----------------------------------------------------------------------------------
    def _loader(self, epoch: int):
        seed = self.cfg.seed * 100_003 + epoch  # the order of epoch e depends on (seed, e) only
        sampler = self.sampler_factory(self.data.train, seed) if self.sampler_factory else None
        if sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        # drop_last: Mixup needs even batches, and BatchNorm in the kernel generator needs > 1 sample
        return make_loader(self.data.train, self.cfg.batch_size, shuffle=sampler is None, seed=seed,
                           drop_last=True, sampler=sampler, device=self.ctx.device)

    def _steps_per_epoch(self) -> int:
        n = len(self.data.train) // self.ctx.world_size
        steps = n // self.cfg.batch_size
        if steps < 1:
            raise UserError(f"batch size {self.cfg.batch_size} is larger than the {n} training images per worker")
        return steps

    def _autocast(self):
        return autocast(self.cfg.amp, self.ctx.device)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        model, core = self.model, unwrap(self.model)
        model.train()
        loader = self._loader(epoch)
        # The loss stays on the device and is read every HOST_READ_EVERY steps: a read waits for the device,
        # and on a GPU a wait at every step keeps Python from queueing the next step's kernels meanwhile.
        total_loss = torch.zeros((), device=self.ctx.device)
        seen, start = 0, time.perf_counter()
        read_times: list[float] = []
        bar = tqdm(loader, total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
                   disable=not self.progress, leave=False, dynamic_ncols=True, mininterval=0.5)
        for step, (x, y) in enumerate(bar):
            x, y = x.to(self.ctx.device, non_blocking=True), y.to(self.ctx.device, non_blocking=True)
            target = y
            if self.mixup is not None:
                x, target = self.mixup(x, y)
            paths = self.path_sampler.paths() if self.path_sampler else [None]
            self.optimizer.zero_grad(set_to_none=True)
            teacher = None
            for arch in paths:
                if arch is not None:
                    core.set_active(arch)
                with self._autocast():
                    logits = model(x)
                    if teacher is None:
                        loss = self.loss_fn(logits, target) / len(paths)
                    else:
                        loss = self.distill_loss(logits, teacher) / len(paths)
                if self.inplace_distill and teacher is None:
                    teacher = logits.detach().float().softmax(dim=-1)
                (self.scaler.scale(loss) if self.scaler else loss).backward()
                total_loss += loss.detach().float() * y.shape[0]
            apply_gradients(self.optimizer, core.parameters(), self.cfg.clip_grad, self.scaler)
            self.scheduler.step_update(epoch * self.steps_per_epoch + step + 1)
            if self.ema:
                self.ema.update(core, step=epoch * self.steps_per_epoch + step + 1)
            seen += y.shape[0]
            if (step + 1) % HOST_READ_EVERY == 0 or step + 1 == self.steps_per_epoch:
                mean_loss = self._read_loss(total_loss, seen, epoch, step)
                if epoch == self.start_epoch and step + 1 in (HOST_READ_EVERY, 2 * HOST_READ_EVERY):
                    read_times.append(time.perf_counter())
                    if len(read_times) == 2:  # timed after the first steps, which warm up
                        self._warn_if_slow((read_times[1] - read_times[0]) / HOST_READ_EVERY, epoch, step + 1)
                bar.set_postfix(loss=f"{mean_loss:.3f}",
                                img_s=f"{seen * self.ctx.world_size / (time.perf_counter() - start):.0f}")
        bar.close()
        if self.ctx.world_size > 1 and torch.distributed.is_initialized():
            # the epoch's loss over every worker's images (each worker saw as many), not rank 0's share alone
            torch.distributed.all_reduce(total_loss)
            seen_everywhere = seen * self.ctx.world_size
        else:
            seen_everywhere = seen
        mean_loss = self._read_loss(total_loss, seen_everywhere, epoch, step)  # also waits for the device
        elapsed = time.perf_counter() - start
        return {"train_loss": mean_loss, "images_per_s": seen * self.ctx.world_size / elapsed,
                "epoch_time_s": elapsed, "lr": self.optimizer.param_groups[0]["lr"]}

    def _warn_if_slow(self, step_s: float, epoch: int, steps_done: int) -> None:
        """One line when the run's remaining steps at ``step_s`` seconds each add up to more than SLOW_RUN_S."""
        remaining = (self.cfg.epochs - epoch) * self.steps_per_epoch - steps_done
        estimate = remaining * step_s
        if estimate <= SLOW_RUN_S or not self.progress:
            return
        side = self.data.img_size
        smaller = "--img-size 32" if side > 64 else f"--img-size {max(8, side // 2)}"
        tqdm.write(f"note: this run will take about {estimate / 3600:.1f} h at this pace ({self.cfg.epochs} epochs x "
                   f"{self.steps_per_epoch:,} steps of {self.cfg.batch_size} images at {side} px, "
                   f"{step_s:.2f} s a step); for a smaller one: {smaller}, --train-subset N or "
                   f"--epochs N", file=sys.stdout)

    @staticmethod
    def _read_loss(total_loss: torch.Tensor, seen: int, epoch: int, step: int) -> float:
        """The epoch's mean loss so far, on the host; a NaN or inf stops training before anything is saved
        (checkpoints are written only at the end of an epoch)."""
        value = total_loss.item() / max(seen, 1)
        if not math.isfinite(value):
            raise FloatingPointError(f"loss is {value} by epoch {epoch + 1} step {step + 1}")
        return value

    def validate(self, epoch: int) -> dict[str, float]:
        core, dev = unwrap(self.model), self.ctx.device
        if self.path_sampler is None:
            metrics = evaluate(core, self.data.val, batch_size=self.cfg.eval_batch_size, device=dev)
            out = {"val_top1": metrics["top1"], "val_loss": metrics["loss"]}
            if self.ema:
                out["val_top1_ema"] = evaluate(self.ema.module, self.data.val, batch_size=self.cfg.eval_batch_size,
                                               device=dev)["top1"]
            return out
        out = {}
        for name, arch in self.eval_archs.items():
            metrics = evaluate_arch(core, arch, self.data, recalib_batches=self.cfg.recalib_batches,
                                    batch_size=self.cfg.eval_batch_size, seed=self.cfg.seed, device=dev)
            out[f"val_top1_{name}"] = metrics["top1"]
        return out

    def fit(self, resume: bool = False) -> list[dict]:
        path = self.run_dir / CHECKPOINT
        if resume and path.exists():
            self.resume(path)
            if self.progress:
                print(f"resumed from {path} after epoch {self.start_epoch}", flush=True)
        for epoch in range(self.start_epoch, self.cfg.epochs):
            metrics = {"epoch": epoch + 1, **self.train_epoch(epoch)}
            if self.ctx.is_main:
                metrics.update(self.validate(epoch))
            unreadable = take_unreadable(self.data.train) + take_unreadable(self.data.val)
            if unreadable and self.ctx.is_main:
                print(f"warning: epoch {epoch + 1}: {unreadable:,} reads of unreadable image files, each served "
                      f"the next readable file instead", flush=True)
            self.history.append(metrics)
            saved = None
            if self.ctx.is_main:
                ckpt.save_atomic(self.state_dict(epoch + 1), path)
                write_csv_atomic(self.run_dir / METRICS, self.history)
                saved = path
                if self.progress:
                    print(format_epoch(metrics), flush=True)
            if self.on_epoch_end:
                self.on_epoch_end(metrics, saved)
        return self.history


def format_epoch(m: dict) -> str:
    parts = [f"epoch {m['epoch']}", f"loss {m['train_loss']:.4f}", f"{m['images_per_s']:.0f} img/s",
             f"{m['epoch_time_s']:.1f}s"]
    parts += [f"{k.replace('_', ' ')} {v:.4f}" for k, v in m.items() if k.startswith("val_")]
    return " | ".join(parts)



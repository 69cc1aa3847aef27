"""The training loop shared by supernet training and retraining, and the evaluation helpers.

Built from timm's factories: AdamW (``create_optimizer_v2``), cosine schedule with warm-up
(``create_scheduler_v2``, stepped per update), label smoothing / soft-target losses, Mixup/CutMix,
model EMA and gradient clipping. A supernet step runs the paths its ``PathSampler`` gives
(gradients accumulated over them); a standalone network runs its single path.

Every epoch ends with an atomic checkpoint holding model, optimizer, scheduler, EMA, path
sampler, every RNG state and the history; the data order of epoch e depends only on
(seed, e), so ``--resume`` continues exactly where a run stopped.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, dispatch_clip_grad
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import Dataset
from tqdm import tqdm

from nas import checkpoint as ckpt
from nas.config import TrainConfig
from nas.data import DataBundle, make_loader
from nas.errors import UserError
from nas.report import write_csv_atomic
from searchspace import Arch
from supernet import MixerNet, PathSampler

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
HOST_READ_EVERY = 8  # training steps between reads of the loss on the host (see Trainer.train_epoch)


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # keys: nas.config.AMP_MODES


def autocast(amp: bool | str, device: torch.device | str):
    """The autocast context of a TrainConfig's ``amp`` on ``device`` (a no-op when off)."""
    return torch.autocast(torch.device(device).type, dtype=AMP_DTYPES[amp]) if amp else contextlib.nullcontext()


def hard_label_loss(label_smoothing: float) -> nn.Module:
    return LabelSmoothingCrossEntropy(label_smoothing) if label_smoothing > 0 else nn.CrossEntropyLoss()


def apply_gradients(optimizer: torch.optim.Optimizer, parameters, clip_grad: float | None,
                    scaler: torch.amp.GradScaler | None) -> None:
    """The end of a training step: unscale (fp16), clip, step the optimizer (and the scaler)."""
    if scaler:
        scaler.unscale_(optimizer)
    if clip_grad:
        dispatch_clip_grad(parameters, clip_grad)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


@dataclass
class WorkerContext:
    """Where this process sits in a (possibly distributed) run."""
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def local_device(use_gpu: bool) -> torch.device:
    """The device of a run in this process: CUDA with ``--gpu`` (UserError if torch sees none), else the CPU."""
    if use_gpu and not torch.cuda.is_available():
        raise UserError("--gpu: torch sees no CUDA device on this machine; leave --gpu out to train on the CPU")
    return torch.device("cuda" if use_gpu else "cpu")


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


# --- evaluation ---------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, *, batch_size: int = 256,
             device: torch.device | str = "cpu") -> dict[str, float]:
    """Top-1 (fraction) and mean cross-entropy on ``dataset``, in eval mode."""
    was_training = model.training
    model.eval()
    correct, loss, count = 0, 0.0, 0
    for x, y in make_loader(dataset, batch_size, shuffle=False, seed=0, device=device):
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
        count += y.numel()
    model.train(was_training)
    return {"top1": correct / max(count, 1), "loss": loss / max(count, 1)}


@torch.no_grad()
def recalibrate_bn(model: nn.Module, dataset: Dataset, *, num_batches: int, batch_size: int = 128,
                   seed: int = 0, device: torch.device | str = "cpu") -> None:
    """Recompute every BatchNorm's running statistics as the plain average over ``num_batches``
    training batches (an inherited sub-network's statistics belong to the supernet's mix of paths).
    Only the norms switch to train mode: dropout and drop-path stay off. A dataset smaller than
    ``batch_size`` is one batch of all its images (issue #11: it used to run no batch at all and
    leave every norm at mean 0, variance 1)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or num_batches <= 0:
        return
    if len(dataset) < 2:
        raise ValueError(f"BatchNorm recalibration needs at least 2 training images, got {len(dataset)}")
    batch_size = min(batch_size, len(dataset))
    was_training = model.training
    model.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
        m.train()
    loader = make_loader(dataset, batch_size, shuffle=True, seed=seed, drop_last=True, device=device)
    for i, (x, _) in enumerate(loader):
        if i >= num_batches:
            break
        model(x.to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)


def check_finetune_variants(steps: int, warmup_steps: int, average_last: int) -> None:
    """``finetune``'s variants must fit its steps: a warm-up shorter than them, an average over at most all of them."""
    if not 0 <= warmup_steps < steps or not 0 <= average_last <= steps:
        raise ValueError(f"fine-tuning of {steps} steps: warm-up {warmup_steps} and averaging {average_last} must lie "
                         f"within them")


def finetune(model: nn.Module, dataset: Dataset, recipe: TrainConfig, *, steps: int, seed: int = 0,
             device: torch.device | str = "cpu", warmup_steps: int = 0, average_last: int = 0) -> float:
    """Train ``model`` (an extracted sub-network) for ``steps`` updates of ``recipe``'s batch size on ``dataset``:
    AdamW at the recipe's peak learning rate and weight decay, cosine to zero over the steps, its label smoothing
    (no Mixup/CutMix) and gradient clipping. Returns the mean training loss over all the steps: how fast the arch
    fits from its inherited weights (the training-speed estimate of Ru et al., 2021; docs/BENCHMARKS.md measures it as
    a ranking signal).

    Why: shared weights rate an arch by what it reaches after long training together with every other path;
    a few steps on its own let each arch shed the compromise (docs/BENCHMARKS.md: mean Kendall tau 0.575 -> 0.685 over
    three supernets, 64 archs). Every random choice (data order, augmentation, dropout) follows ``seed``; the global RNG is
    restored afterwards, so a caller's stream is not disturbed.

    Two variants, measured and not the search's (docs/BENCHMARKS.md, "Free variants of the steps"): ``warmup_steps``
    ramps the learning rate linearly from 0 over the first steps (the default starts at the peak, and Adam's first
    updates then move every weight by about the learning rate, which ranks better); ``average_last`` ends with the mean
    of the weights after each of the last that many steps (torch's ``AveragedModel``) instead of the last weights.
    """
    if steps < 1:
        raise ValueError(f"fine-tuning needs at least 1 step, got {steps}")
    check_finetune_variants(steps, warmup_steps, average_last)
    batch_size = min(recipe.batch_size, len(dataset))
    if batch_size < 2:
        raise ValueError(f"fine-tuning needs at least 2 training images, got {len(dataset)}")
    optimizer = create_optimizer_v2(model, opt="adamw", lr=recipe.lr, weight_decay=recipe.weight_decay)
    # One "epoch" per step, so that the warm-up is counted in steps (create_scheduler_v2 counts it in epochs).
    scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=steps, warmup_epochs=warmup_steps,
                                       warmup_lr=0.0, min_lr=0.0, step_on_epochs=False, updates_per_epoch=1)
    averaged = AveragedModel(model, use_buffers=False) if average_last else None
    loss_fn = hard_label_loss(recipe.label_smoothing)
    scaler = torch.amp.GradScaler("cuda") if recipe.amp == "fp16" else None
    was_training = model.training
    model.train()
    losses, step, epoch = [], 0, 0
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        while step < steps:
            for x, y in make_loader(dataset, batch_size, shuffle=True, seed=seed * 100_003 + epoch, drop_last=True,
                                    device=device):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                with autocast(recipe.amp, device):
                    loss = loss_fn(model(x), y)
                (scaler.scale(loss) if scaler else loss).backward()
                apply_gradients(optimizer, model.parameters(), recipe.clip_grad, scaler)
                step += 1
                scheduler.step_update(step)
                losses.append(loss.detach())
                if averaged is not None and step > steps - average_last:
                    averaged.update_parameters(model)
                if step == steps:
                    break
            epoch += 1
    if averaged is not None:
        with torch.no_grad():
            for mine, mean in zip(model.parameters(), averaged.module.parameters()):
                mine.copy_(mean)
    model.train(was_training)
    mean_loss = torch.stack(losses).float().mean().item()
    if not math.isfinite(mean_loss):
        raise FloatingPointError(f"fine-tuning loss is {mean_loss}")
    return mean_loss


def evaluate_arch(supernet: MixerNet, arch: Arch, data: DataBundle, *, recalib_batches: int,
                  batch_size: int = 256, seed: int = 0, device: torch.device | str = "cpu",
                  finetune_steps: int = 0, recipe: TrainConfig | None = None, finetune_warmup: int = 0,
                  finetune_average_last: int = 0) -> dict[str, float]:
    """Top-1 and loss of ``arch`` with inherited weights: extract, optionally fine-tune alone for ``finetune_steps``
    steps of ``recipe`` (the supernet's training recipe) on the train split, recalibrate BatchNorm on the train
    split, evaluate on the validation split (what the search optimises; the test split is never read here).
    Returns the validation ``top1`` and ``loss``, and with fine-tuning its mean training loss (``train_loss``).
    ``finetune_warmup`` and ``finetune_average_last`` are ``finetune``'s measured variants (0: the search's way).
    The supernet itself is never changed."""
    net = supernet.extract(arch).to(device)
    train_loss = None
    if finetune_steps > 0:
        if recipe is None:
            raise ValueError("fine-tuning needs the supernet's training recipe")
        train_loss = finetune(net, data.train, recipe, steps=finetune_steps, seed=seed, device=device,
                              warmup_steps=finetune_warmup, average_last=finetune_average_last)
    recalibrate_bn(net, data.train, num_batches=recalib_batches, seed=seed, device=device)
    result = evaluate(net, data.val, batch_size=batch_size, device=device)
    return result if train_loss is None else {**result, "train_loss": train_loss}


# --- training -----------------------------------------------------------------------------------

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
                bar.set_postfix(loss=f"{mean_loss:.3f}",
                                img_s=f"{seen * self.ctx.world_size / (time.perf_counter() - start):.0f}")
        bar.close()
        mean_loss = self._read_loss(total_loss, seen, epoch, step)  # also waits for the device: honest timing
        elapsed = time.perf_counter() - start
        return {"train_loss": mean_loss, "images_per_s": seen * self.ctx.world_size / elapsed,
                "epoch_time_s": elapsed, "lr": self.optimizer.param_groups[0]["lr"]}

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



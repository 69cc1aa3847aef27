"""The pieces every training step shares: mixed precision, the hard-label loss, the end of a step (unscale, clip,
step), and where this process sits in a run (rank, world size, device)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from timm.loss import LabelSmoothingCrossEntropy
from timm.utils import dispatch_clip_grad
from torch import nn

from nas.errors import UserError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # keys: nas.settings.AMP_MODES


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

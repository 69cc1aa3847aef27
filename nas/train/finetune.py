"""A sub-network's fine-tuning steps: how the search scores an arch after inheriting its weights.

Why: shared weights rate an arch by what it reaches after long training together with every other path; a few
steps on its own let each arch shed the compromise (docs/BENCHMARKS.md: mean Kendall tau 0.575 -> 0.685 over three
supernets, 64 archs).
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch import nn
from torch.utils.data import Dataset

from nas.data.loaders import make_loader
from nas.settings import TrainConfig
from nas.train.steps import apply_gradients, autocast, hard_label_loss


def step_optimizer(model: nn.Module, recipe: TrainConfig, steps: int, *, warmup_steps: int = 0):
    """AdamW at ``recipe``'s peak learning rate and weight decay, and a cosine schedule to zero over ``steps``
    updates (after a linear warm-up from 0 over ``warmup_steps``; the search uses none)."""
    optimizer = create_optimizer_v2(model, opt="adamw", lr=recipe.lr, weight_decay=recipe.weight_decay)
    # One "epoch" per step, so that the warm-up is counted in steps (create_scheduler_v2 counts it in epochs).
    scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=steps, warmup_epochs=warmup_steps,
                                       warmup_lr=0.0, min_lr=0.0, step_on_epochs=False, updates_per_epoch=1)
    return optimizer, scheduler


def finetune_steps(model: nn.Module, dataset: Dataset, recipe: TrainConfig, optimizer, scheduler, *, steps: int,
                   seed: int = 0, device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """Train ``model`` for ``steps`` updates of ``recipe``'s batch size on ``dataset`` with ``optimizer`` and
    ``scheduler`` (see :func:`step_optimizer`): the recipe's label smoothing (no Mixup/CutMix) and gradient clipping.
    Yields each step's training loss (a tensor on the device) after its update.

    Every random choice (data order, augmentation, dropout) follows ``seed``; the global RNG is restored afterwards,
    so a caller's stream is not disturbed."""
    if steps < 1:
        raise ValueError(f"fine-tuning needs at least 1 step, got {steps}")
    batch_size = min(recipe.batch_size, len(dataset))
    if batch_size < 2:
        raise ValueError(f"fine-tuning needs at least 2 training images, got {len(dataset)}")
    loss_fn = hard_label_loss(recipe.label_smoothing)
    scaler = torch.amp.GradScaler("cuda") if recipe.amp == "fp16" else None
    was_training = model.training
    model.train()
    step, epoch = 0, 0
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
                yield loss.detach()
                if step == steps:
                    break
            epoch += 1
    model.train(was_training)


def mean_loss(losses: list[torch.Tensor]) -> float:
    """The mean of the steps' losses, on the host; a NaN or inf is an error."""
    value = torch.stack(losses).float().mean().item()
    if not math.isfinite(value):
        raise FloatingPointError(f"fine-tuning loss is {value}")
    return value


def finetune(model: nn.Module, dataset: Dataset, recipe: TrainConfig, *, steps: int, seed: int = 0,
             device: torch.device | str = "cpu") -> float:
    """Fine-tune ``model`` (an extracted sub-network) for ``steps`` updates (:func:`finetune_steps`, cosine from the
    peak learning rate). Returns the mean training loss over the steps: how fast the arch fits from its inherited
    weights (the training-speed estimate of Ru et al., 2021; docs/BENCHMARKS.md measures it as a ranking signal)."""
    if steps < 1:
        raise ValueError(f"fine-tuning needs at least 1 step, got {steps}")
    optimizer, scheduler = step_optimizer(model, recipe, steps)
    return mean_loss(list(finetune_steps(model, dataset, recipe, optimizer, scheduler, steps=steps, seed=seed,
                                         device=device)))

"""Evaluation: top-1 and loss on a split, BatchNorm recalibration, and an arch scored with inherited weights."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from nas.data.loaders import make_loader
from nas.data.splits import DataBundle
from nas.settings import TrainConfig
from nas.train.finetune import finetune
from searchspace import Arch
from supernet import MixerNet


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
    ``batch_size`` is one batch of all its images, never no batch (which would leave every norm at mean 0,
    variance 1)."""
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


def evaluate_arch(supernet: MixerNet, arch: Arch, data: DataBundle, *, recalib_batches: int,
                  batch_size: int = 256, seed: int = 0, device: torch.device | str = "cpu",
                  finetune_steps: int = 0, recipe: TrainConfig | None = None) -> dict[str, float]:
    """Top-1 and loss of ``arch`` with inherited weights: extract, optionally fine-tune alone for ``finetune_steps``
    steps of ``recipe`` (the supernet's training recipe) on the train split, recalibrate BatchNorm on the train
    split, evaluate on the validation split (what the search optimises; the test split is never read here).
    Returns the validation ``top1`` and ``loss``, and with fine-tuning its mean training loss (``train_loss``).
    The supernet itself is never changed."""
    net = supernet.extract(arch).to(device)
    train_loss = None
    if finetune_steps > 0:
        if recipe is None:
            raise ValueError("fine-tuning needs the supernet's training recipe")
        train_loss = finetune(net, data.train, recipe, steps=finetune_steps, seed=seed, device=device)
    recalibrate_bn(net, data.train, num_batches=recalib_batches, seed=seed, device=device)
    result = evaluate(net, data.val, batch_size=batch_size, device=device)
    return result if train_loss is None else {**result, "train_loss": train_loss}

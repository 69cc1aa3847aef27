"""Two variants of the search's fine-tuning steps, measured and not adopted (docs/BENCHMARKS.md, "Ranking
experiments"): a linear learning-rate warm-up from 0 over the first steps, and the mean of the weights after each of
the last steps (torch's ``AveragedModel``) instead of the last weights. Used by ``supernet_seeds.py``
(``--finetune-warmup``, ``--finetune-average-last``); with both at 0 an evaluation is the product's own.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import Dataset

from nas.data.splits import DataBundle
from nas.settings import TrainConfig
from nas.train.evaluate import evaluate, evaluate_arch, recalibrate_bn
from nas.train.finetune import finetune_steps, mean_loss, step_optimizer
from searchspace import Arch
from supernet import MixerNet


def check_finetune_variants(steps: int, warmup_steps: int, average_last: int) -> None:
    """The variants must fit the steps: a warm-up shorter than them, an average over at most all of them."""
    if not 0 <= warmup_steps < steps or not 0 <= average_last <= steps:
        raise ValueError(f"fine-tuning of {steps} steps: warm-up {warmup_steps} and averaging {average_last} must lie "
                         f"within them")


def finetune_variant(model: nn.Module, dataset: Dataset, recipe: TrainConfig, *, steps: int, seed: int = 0,
                     device: torch.device | str = "cpu", warmup_steps: int = 0, average_last: int = 0) -> float:
    """The product's fine-tuning (the same steps, data and seed) with a warm-up and/or averaged last weights; returns
    the mean training loss over the steps."""
    check_finetune_variants(steps, warmup_steps, average_last)
    optimizer, scheduler = step_optimizer(model, recipe, steps, warmup_steps=warmup_steps)
    averaged = AveragedModel(model, use_buffers=False) if average_last else None
    losses = []
    for step, loss in enumerate(finetune_steps(model, dataset, recipe, optimizer, scheduler, steps=steps, seed=seed,
                                               device=device), start=1):
        losses.append(loss)
        if averaged is not None and step > steps - average_last:
            averaged.update_parameters(model)
    if averaged is not None:
        with torch.no_grad():
            for mine, mean in zip(model.parameters(), averaged.module.parameters()):
                mine.copy_(mean)
    return mean_loss(losses)


def evaluate_arch_variant(supernet: MixerNet, arch: Arch, data: DataBundle, *, recalib_batches: int, seed: int,
                          finetune_steps: int, recipe: TrainConfig, warmup_steps: int = 0, average_last: int = 0,
                          device: torch.device | str = "cpu") -> dict[str, float]:
    """``nas.train.evaluate.evaluate_arch`` with the variants; without them (or without steps), that function itself."""
    if finetune_steps == 0 or (warmup_steps == 0 and average_last == 0):
        return evaluate_arch(supernet, arch, data, recalib_batches=recalib_batches, seed=seed, device=device,
                             finetune_steps=finetune_steps, recipe=recipe)
    net = supernet.extract(arch).to(device)
    train_loss = finetune_variant(net, data.train, recipe, steps=finetune_steps, seed=seed, device=device,
                                  warmup_steps=warmup_steps, average_last=average_last)
    recalibrate_bn(net, data.train, num_batches=recalib_batches, seed=seed, device=device)
    return {**evaluate(net, data.val, device=device), "train_loss": train_loss}

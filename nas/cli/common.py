"""Arguments and helpers shared by several subcommands."""
from __future__ import annotations

import argparse
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nas.errors import UserError
from searchspace import SearchSpace
from searchspace.space import BUILTIN_SPACES


def add_space_argument(parser: argparse.ArgumentParser, default: str = "default") -> None:
    parser.add_argument("--space", metavar="NAME|FILE", default=None,
                        help=f"a built-in space ({', '.join(BUILTIN_SPACES)}) or a search-space JSON file "
                             f"(default: {default})")


def load_space(name_or_path: str | None) -> SearchSpace:
    return SearchSpace.load(name_or_path)


def check_trial_resources(cpus: float, gpus: float = 0.0) -> None:
    """What Ray accepts for one trial, checked before Ray sees it (Ray's own error is a traceback).

    Regression: issue #11 -- ``--cpus-per-trial 0`` ended in "Cannot initialize a ResourceRequest with an empty head".
    """
    if cpus < 0 or gpus < 0:
        raise UserError(f"--cpus-per-trial and --gpus-per-trial cannot be negative (got {cpus:g} and {gpus:g})")
    if cpus == 0 and gpus == 0:
        raise UserError("--cpus-per-trial 0 with no GPU gives a trial no resources: give it CPUs (e.g. 1) or GPUs")
    if gpus > 1 and gpus != int(gpus):
        raise UserError(f"--gpus-per-trial {gpus:g}: above 1 it must be a whole number "
                        f"(Ray shares only fractions of one GPU)")


def check_trial_fits_here(cpus: float, gpus: float, gpus_here: int) -> None:
    """Refuse a trial bigger than this machine, before any work: a local Ray would keep it pending forever.
    (``nas.raysession.check_fits_local_ray`` checks again against what Ray itself counted.)"""
    cpus_here = os.cpu_count() or 1
    if gpus > gpus_here:
        raise UserError(f"--gpus-per-trial {gpus:g}: torch sees {gpus_here} CUDA devices on this machine, so no "
                        f"trial could start (add --address to run on a cluster with GPUs)")
    if cpus > cpus_here:
        raise UserError(f"--cpus-per-trial {cpus:g}: this machine has {cpus_here} CPUs, so no trial could start")


def add_address_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--address", default=None, metavar="HOST:PORT",
                        help="run on this Ray cluster (its head's address, or auto); default: RAY_ADDRESS if set, "
                             "else a Ray of this command's own, even where `ray start` runs a cluster on this machine")


def add_finetune_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--finetune-steps``: how ``search`` and ``check-ranking`` score an arch (the same default in both)."""
    from nas.config import FINETUNE_STEPS

    parser.add_argument("--finetune-steps", type=int, default=FINETUNE_STEPS,
                        help=f"steps each arch trains alone from its inherited weights before it is evaluated "
                             f"(default {FINETUNE_STEPS}, about an epoch of the default data; 0: the inherited "
                             f"weights as they are)")


def check_finetune_steps(steps: int) -> None:
    if steps < 0:
        raise UserError(f"--finetune-steps {steps}: must be 0 (off) or more")


@dataclass(frozen=True)
class Bound:
    """The values a numeric flag takes: at least ``low`` (above it if ``low_open``), at most ``high`` (below it if
    ``high_open``), and finite (argparse reads "nan" and "inf" as floats)."""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


# Recipe and network flags by argparse dest (the same meaning in every command that has them). Without these
# checks a negative --lr or a --drop-path above 1 ended in a traceback, and a negative --clip-grad or an --ema
# above 1 trained silently on nonsense (a negative clip norm flips every gradient).
FLAG_BOUNDS = {
    "lr": ("--lr", Bound(0, low_open=True)),
    "weight_decay": ("--weight-decay", Bound(0)),
    "warmup_epochs": ("--warmup-epochs", Bound(0)),
    "label_smoothing": ("--label-smoothing", Bound(0, 1, high_open=True)),
    "clip_grad": ("--clip-grad", Bound(0)),              # 0: off
    "recalib_batches": ("--recalib-batches", Bound(0)),  # 0: none (the running statistics as they are)
    "drop_path": ("--drop-path", Bound(0, 1, high_open=True)),
    "num_workers": ("--num-workers", Bound(1)),
    "embed_dim": ("--embed-dim", Bound(1)),
    "patch_size": ("--patch-size", Bound(1)),
    "ema": ("--ema", Bound(0, 1, low_open=True, high_open=True)),
    "mixup": ("--mixup", Bound(0)),
    "cutmix": ("--cutmix", Bound(0)),
    "latency_batch": ("--latency-batch", Bound(1)),
}


def check_flag_bounds(args: argparse.Namespace) -> None:
    """Raise UserError for the first flag of FLAG_BOUNDS whose value is outside its bound (a flag left at None,
    "the default", is not checked)."""
    for dest, (flag, bound) in FLAG_BOUNDS.items():
        value = getattr(args, dest, None)
        if value is not None and not bound.admits(value):
            raise UserError(f"{flag} {value:g}: must be {bound}")


def check_writable_dir(path: str | Path, what: str) -> None:
    """Raise UserError, naming ``what`` (a flag or "the output folder"), when ``path`` cannot be made or written: a
    file in the way, no permission, a read-only disk. Before any work, so that a run does not fail with a traceback
    at its first write, minutes in. Folders made to find out are removed again."""
    path = Path(path)
    made = []
    try:
        missing = [p for p in (path, *path.parents) if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir()
            made.append(folder)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise UserError(f"{what} {path}: cannot write there ({e.strerror or e})") from None
    finally:
        for folder in reversed(made):
            folder.rmdir()

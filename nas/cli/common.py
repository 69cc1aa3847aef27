"""Arguments and helpers shared by several subcommands."""
from __future__ import annotations

import argparse

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

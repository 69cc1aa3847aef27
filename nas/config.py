"""The settings of a run that a command line is checked against: data, training recipe, the named choices.

Plain dataclasses and names, no torch: ``launch.py`` builds its parser and rejects a bad flag from these alone,
so a typo costs a second, not the ten it takes to import torch and timm. The modules that use the settings
(:mod:`nas.data`, :mod:`nas.engine`, :mod:`nas.search`) import them from here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from nas.errors import UserError

DATASETS = ("mnist-cluttered", "mnist", "cifar10", "cifar100", "imagefolder")
DEFAULT_DATASET = "mnist-cluttered"  # embedded, and the archs within a budget really differ on it (docs/DATA.md)
EMBEDDED_DATASETS = ("mnist-cluttered", "mnist")  # shipped with a dependency: no folder to read

# Names of the choices a module elsewhere implements; each is checked against its implementation in the tests.
PATH_SAMPLERS = ("spos", "sandwich")            # supernet.SAMPLERS: which paths a supernet training step runs
SEARCH_SAMPLERS = ("tpe", "nsga2", "random")    # Optuna samplers of nas.search
AMP_MODES = ("bf16", "fp16")                    # nas.engine.AMP_DTYPES
ONNX_MIN_OPSET = 18  # what torch.onnx's exporter writes natively; below it the conversion fails for these nets

# Steps an arch trains alone from its inherited weights before the search evaluates it (``nas.engine.finetune``).
# About one epoch of the default task (3,000 images, batch 64); chosen in docs/BENCHMARKS.md.
FINETUNE_STEPS = 48


def check_ranking_size(count: int) -> None:
    """A ranking (Kendall tau, Spearman rho) compares at least two archs: ``check-ranking --archs`` and the draw."""
    if count < 2:
        raise UserError(f"--archs {count}: a ranking needs at least 2 archs")


def default_img_size(dataset: str) -> int:
    return 224 if dataset == "imagefolder" else 32


@dataclass(frozen=True)
class DataConfig:
    dataset: str = DEFAULT_DATASET
    root: str | None = None        # required for cifar10/cifar100/imagefolder; unused for mnist
    img_size: int | None = None    # None -> 32 for mnist and cifar, 224 for imagefolder
    augment: bool = True           # training-split augmentation on/off
    train_subset: int | None = None  # use only this many training images (a fixed choice): quick runs

    @property
    def side(self) -> int:
        """The input side the images are resized to: img_size, else the dataset's default."""
        return default_img_size(self.dataset) if self.img_size is None else self.img_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DataConfig":
        """From a saved config; older files also held a ``seed`` (the split followed it then), ignored now."""
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def root_dir(self) -> Path:
        """The folder a CIFAR or image-folder dataset is read from; a missing one raises UserError."""
        if self.root is None or str(self.root).strip() == "":
            raise UserError(f"dataset {self.dataset!r} needs a root folder (root is not set)")
        path = Path(self.root).expanduser()
        if not path.is_dir():
            raise UserError(f"{self.dataset} root {str(path)!r}: no such directory")
        return path

    def check_folder(self) -> None:
        """Refuse a dataset whose folder is missing from its settings alone: the commands call this before torch
        is imported, so a wrong --data-root costs a fraction of a second, not the seconds of loading."""
        if self.dataset not in EMBEDDED_DATASETS:
            self.root_dir()

    # The data flags a user may give on the command line, by field.
    FLAGS = {"dataset": "--dataset", "root": "--data-root", "img_size": "--img-size", "augment": "--no-augment",
             "train_subset": "--train-subset"}


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    min_lr: float = 1e-5
    warmup_epochs: int = 1
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    clip_grad: float | None = 5.0
    mixup: float = 0.0            # Mixup alpha (0: off)
    cutmix: float = 0.0           # CutMix alpha (0: off)
    ema_decay: float | None = None
    amp: bool | str = False       # False, "bf16" (autocast, no scaler) or "fp16" (autocast + grad scaling, CUDA)
    recalib_batches: int = 8      # BatchNorm recalibration batches before each evaluation of a sub-network
    eval_batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        # False (not None) for "off": jobs saved before bf16 existed keep their fingerprint; True meant float16.
        self.amp = {None: False, "off": False, True: "fp16"}.get(self.amp, self.amp)
        if self.amp not in AMP_MODES and self.amp is not False:
            raise UserError(f"--amp {self.amp}: choose bf16 or fp16")

    def to_dict(self) -> dict:
        return asdict(self)

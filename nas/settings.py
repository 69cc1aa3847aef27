"""The typed settings of a run: data, training recipe, network, and the jobs built from them.

Plain dataclasses, no torch: ``launch.py`` builds its parser and refuses a bad flag from these alone, so a typo
costs a second, not the ten it takes to import torch and timm. Every numeric field that a flag sets carries its
range (:func:`setting`); a record out of range cannot be made, whether a flag, a test or a saved file made it.
Settings travel as these records everywhere; they become dicts only when written to a file (``to_dict``) and
come back through ``from_dict`` (old files pass :func:`nas.runs.migrate.migrate` first).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from nas.errors import UserError
from searchspace import Budget, NetSettings, SearchSpace, format_flops

DATASETS = ("mnist-cluttered", "mnist", "cifar10", "cifar100", "imagefolder")
DEFAULT_DATASET = "mnist-cluttered"  # embedded, and the archs within a budget really differ on it (docs/DATA.md)
EMBEDDED_DATASETS = ("mnist-cluttered", "mnist")  # shipped with a dependency: no folder to read

# Names of the choices a module elsewhere implements; each is checked against its implementation in the tests.
PATH_SAMPLERS = ("spos", "sandwich")            # supernet.SAMPLERS: which paths a supernet training step runs
SEARCH_SAMPLERS = ("tpe", "nsga2", "random")    # Optuna samplers of nas.search.samplers
AMP_MODES = ("bf16", "fp16")                    # nas.train.steps.AMP_DTYPES
LATENCY_METHODS = ("lut", "measure")            # predicted from a table of blocks, or timed per arch
SEARCH_SCORES = ("loss", "top1")                # what the search maximises: nas.search.score.SCORES
INITS = ("scratch", "supernet")                 # where a retrain's weights start
ONNX_MIN_OPSET = 18  # what torch.onnx's exporter writes natively; below it the conversion fails for these nets

# Steps an arch trains alone from its inherited weights before the search evaluates it (``nas.train.finetune``).
# About one epoch of the default task (3,000 images, batch 64); chosen in docs/BENCHMARKS.md.
FINETUNE_STEPS = 48
# Times a trial whose process died (or that raised) is started again before it counts as an error. A lost node can
# cost a trial two: Ray Tune may hear of the lost process and of a second attempt handed a process on that node
# before Ray marked it dead (tests/cli/test_two_nodes.py); three leaves one for anything else.
MAX_FAILURES = 3
DRAWS = 4000  # uniform draws of the space that a ranking check's archs are taken from
DEFAULT_BUDGET = "4.5GFLOPs"  # Swin-T's cost


# --- ranges ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bound:
    """The values a numeric setting takes: at least ``low`` (above it if ``low_open``), at most ``high`` (below it
    if ``high_open``), and finite (argparse reads "nan" and "inf" as floats)."""
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


POSITIVE = Bound(0, low_open=True)
NON_NEGATIVE = Bound(0)
AT_LEAST_ONE = Bound(1)
FRACTION = Bound(0, 1, high_open=True)


def setting(default, flag: str, help: str, bound: Bound | None = None, *, type=None, choices: tuple | None = None,
            metavar: str | None = None, dest: str | None = None):
    """A dataclass field that a command-line flag sets: the flag, its help, its range and its default are declared
    here once, and ``nas.cli.flags`` makes the option from them. A value (unless None: "the default") must lie in
    ``bound``; the refusal names ``flag`` as the user typed it. ``type`` is needed only where the default is None;
    ``dest`` where two records share a field name in one command (the search's seed and its supernet's)."""
    metadata = {"flag": flag, "help": help, "bound": bound, "type": type, "choices": choices, "metavar": metavar,
                "dest": dest}
    return field(default=default, metadata={k: v for k, v in metadata.items() if v is not None})


def recalib_batches_setting():
    return setting(8, "--recalib-batches", "BatchNorm recalibration batches before each evaluation of a sub-network "
                   "(0: the running statistics as they are)", NON_NEGATIVE)


def finetune_steps_setting():
    return setting(FINETUNE_STEPS, "--finetune-steps", "steps each arch trains alone from its inherited weights before "
                   "it is evaluated (about an epoch of the default data; 0, with --score top1: the inherited weights "
                   "as they are)", NON_NEGATIVE)


def score_setting():
    return setting("loss", "--score", "the score of each arch that the search maximises, from one evaluation "
                   "after its fine-tuning steps: loss (minus the validation loss plus the steps' mean training "
                   "loss) or top1 (the validation top-1). loss ranked stand-alone training better on digits and on "
                   "photos (docs/BENCHMARKS.md); it needs the steps", choices=SEARCH_SCORES)


def check_score(score: str, finetune_steps: int) -> None:
    """Refuse a score the evaluation cannot give: ``loss`` adds the fine-tuning steps' training loss."""
    if score not in SEARCH_SCORES:
        raise UserError(f"--score {score}: choose from {', '.join(SEARCH_SCORES)}")
    if score == "loss" and finetune_steps == 0:
        raise UserError("--score loss with --finetune-steps 0: the score adds the steps' training loss; give "
                        "steps, or --score top1")


# No range here: TrialResources refuses a negative count, or a trial of no CPU and no GPU, in its own words.
def cpus_per_trial_setting():
    return setting(1.0, "--cpus-per-trial", "CPUs each parallel run (Ray trial) holds", dest="cpus_per_trial")


def gpus_per_trial_setting():
    return setting(0.0, "--gpus-per-trial", "GPUs each parallel run holds (a fraction: a share of one)",
                   dest="gpus_per_trial")


def check_value(flag: str, value: float, bound: Bound) -> None:
    """UserError when ``value`` lies outside ``bound``, naming the flag: ``--lr -1: must be > 0``."""
    if not bound.admits(value):
        raise UserError(f"{flag} {value:g}: must be {bound}")


def check_bounds(record) -> None:
    """Raise UserError for the first bounded field of ``record`` outside its range (None: the default, unchecked)."""
    for f in fields(record):
        value = getattr(record, f.name)
        if "bound" in f.metadata and value is not None:
            check_value(f.metadata["flag"], value, f.metadata["bound"])


def flag_of(record_type, name: str) -> str:
    """The flag that sets field ``name`` of ``record_type``."""
    return record_type.__dataclass_fields__[name].metadata["flag"]


def default_img_size(dataset: str) -> int:
    return 224 if dataset == "imagefolder" else 32


# --- data, recipe, network ------------------------------------------------------------------------

class Record:
    """A settings record as a file holds it: ``to_dict`` a plain dict, ``from_dict`` back (ranges checked again)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**d)


@dataclass(frozen=True)
class DataConfig(Record):
    dataset: str = DEFAULT_DATASET
    root: str | None = None        # required for cifar10/cifar100/imagefolder; unused for mnist
    img_size: int | None = None    # None -> 32 for mnist and cifar, 224 for imagefolder
    augment: bool = True           # training-split augmentation on/off
    train_subset: int | None = None  # use only this many training images (a fixed choice): quick runs

    # The data flags a user may give on the command line, by field.
    FLAGS = {"dataset": "--dataset", "root": "--data-root", "img_size": "--img-size", "augment": "--no-augment",
             "train_subset": "--train-subset"}

    @property
    def side(self) -> int:
        """The input side the images are resized to: img_size, else the dataset's default."""
        return default_img_size(self.dataset) if self.img_size is None else self.img_size

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


@dataclass
class TrainConfig(Record):
    """A training recipe. Its defaults are the stand-alone recipe (``retrain``, ``check-ranking``); the supernet's
    differs in its epochs only (:data:`SUPERNET_RECIPE`)."""
    epochs: int = setting(10, "--epochs", "training epochs", AT_LEAST_ONE)
    batch_size: int = setting(64, "--batch-size", "images per step and worker", AT_LEAST_ONE)
    lr: float = setting(2e-3, "--lr", "peak AdamW learning rate", POSITIVE)
    min_lr: float = 1e-5
    warmup_epochs: int = setting(1, "--warmup-epochs", "epochs of linear learning-rate warm-up", NON_NEGATIVE)
    weight_decay: float = setting(0.05, "--weight-decay", "AdamW weight decay", NON_NEGATIVE)
    label_smoothing: float = setting(0.1, "--label-smoothing", "label smoothing of the cross-entropy", FRACTION)
    # Without these ranges a negative --clip-grad flips every gradient and an --ema above 1 trains on nonsense.
    clip_grad: float | None = setting(5.0, "--clip-grad", "gradient norm clip (0: off)", NON_NEGATIVE)
    mixup: float = setting(0.0, "--mixup", "Mixup alpha (0: off)", NON_NEGATIVE)
    cutmix: float = setting(0.0, "--cutmix", "CutMix alpha (0: off)", NON_NEGATIVE)
    ema_decay: float | None = setting(None, "--ema", "keep a model EMA of this decay, e.g. 0.999 (default: none)",
                                      Bound(0, 1, low_open=True, high_open=True), type=float, metavar="DECAY")
    amp: bool | str = False       # False, "bf16" (autocast, no scaler) or "fp16" (autocast + grad scaling, CUDA)
    recalib_batches: int = recalib_batches_setting()
    eval_batch_size: int = 256
    seed: int = setting(0, "--seed", "training seed", dest="train_seed")

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.amp not in AMP_MODES and self.amp is not False:
            raise UserError(f"--amp {self.amp}: choose bf16 or fp16")



SUPERNET_RECIPE = TrainConfig(epochs=16)  # the supernet's recipe: the stand-alone one, trained longer


@dataclass
class ModelOptions(Record):
    """Width and patch of the trained network; None picks by input size (small images: C=16, patch 2)."""
    embed_dim: int | None = setting(None, "--embed-dim", "C, the first stage's width (default: 16 for small images, "
                                    "else 96)", AT_LEAST_ONE, type=int)
    patch_size: int | None = setting(None, "--patch-size", "stem patch (default: 2 for small images, else 4)",
                                     AT_LEAST_ONE, type=int)
    drop_path_rate: float = setting(0.0, "--drop-path", "stochastic depth rate", FRACTION)

    def __post_init__(self) -> None:
        check_bounds(self)

    def resolve(self, img_size: int) -> tuple[int, int]:
        """(embed_dim, patch_size) for inputs of side ``img_size``; a patch that does not tile it raises UserError
        (the commands call this before torch is imported)."""
        small = img_size <= 64
        embed_dim, patch_size = self.embed_dim or (16 if small else 96), self.patch_size or (2 if small else 4)
        if img_size % patch_size:
            raise UserError(f"--img-size {img_size} with --patch-size {patch_size}: the input side must be a "
                            f"multiple of the stem's patch")
        return embed_dim, patch_size

    def settings(self, data) -> NetSettings:
        """The network for ``data`` (a ``nas.data.DataBundle``: its input side, channels and classes)."""
        embed_dim, patch_size = self.resolve(data.img_size)
        return NetSettings(img_size=data.img_size, in_chans=data.in_chans, num_classes=data.num_classes,
                           embed_dim=embed_dim, patch_size=patch_size, drop_path_rate=self.drop_path_rate)



# --- jobs ------------------------------------------------------------------------------------------

# Settings that only change how a supernet is evaluated, not its weights: they never pick another supernet.
EVAL_ONLY_TRAIN_FIELDS = ("recalib_batches", "eval_batch_size")


@dataclass
class SupernetJob:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelOptions = field(default_factory=ModelOptions)
    path_sampler: str = "spos"
    space: SearchSpace = field(default_factory=SearchSpace.default)
    path_budget_flops: float | None = None  # train only paths within this many FLOPs (deployment setting)
    # The sandwich's largest path teaches the others each step (BigNAS / OFA in-place distillation)
    inplace_distill: bool = False

    def __post_init__(self) -> None:
        if self.path_sampler not in PATH_SAMPLERS:
            raise UserError(f"path sampler {self.path_sampler!r}: choose from {', '.join(PATH_SAMPLERS)}")
        if self.inplace_distill and self.path_sampler != "sandwich":
            raise UserError(f"in-place distillation needs the sandwich sampler (its largest path is the teacher), "
                            f"not {self.path_sampler!r}")

    @property
    def path_budget(self) -> Budget:
        return Budget(flops=self.path_budget_flops)

    def to_dict(self) -> dict:
        d = {"data": self.data.to_dict(), "train": self.train.to_dict(), "model": self.model.to_dict(),
             "path_sampler": self.path_sampler, "space": self.space.to_dict(),
             "path_budget_flops": self.path_budget_flops}
        if self.inplace_distill:  # off: left out, so the supernets trained before it existed keep their names
            d["inplace_distill"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SupernetJob":
        return cls(DataConfig.from_dict(d["data"]), TrainConfig.from_dict(d["train"]),
                   ModelOptions.from_dict(d["model"]), d["path_sampler"],
                   SearchSpace.from_dict(d["space"], source="supernet job space"), d.get("path_budget_flops"),
                   d.get("inplace_distill", False))

    def fingerprint(self) -> str:
        """Hash of everything that determines the trained weights (not how many workers ran it, nor the
        evaluation-only settings)."""
        d = self.to_dict()
        for name in EVAL_ONLY_TRAIN_FIELDS:
            d["train"].pop(name, None)
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]

    def default_run_dir(self, results: Path) -> Path:
        band = "" if self.path_budget_flops is None else f"-under{format_flops(self.path_budget_flops)}"
        return results / "supernet" / f"{self.data.dataset}-{self.path_sampler}{band}-{self.fingerprint()}"


@dataclass
class RetrainJob(Record):
    arch: dict
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelOptions = field(default_factory=ModelOptions)
    init: str = "scratch"
    supernet: str | None = None   # supernet.pt, for init == "supernet"

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise UserError(f"--init {self.init}: choose from {', '.join(INITS)}")

    @classmethod
    def from_dict(cls, d: dict) -> "RetrainJob":
        return cls(d["arch"], DataConfig.from_dict(d["data"]), TrainConfig.from_dict(d["train"]),
                   ModelOptions.from_dict(d["model"]), d["init"], d["supernet"])

    def recipe_key(self) -> str:
        """Hash of what a stand-alone run's result depends on, besides its arch and seed."""
        d = self.to_dict()
        d.pop("arch")
        d["train"].pop("seed")
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class RunOptions(Record):
    """How a training run is carried out, beside its recipe: in this process or as Ray Train workers, and how often
    a failed run starts again."""
    num_workers: int = setting(1, "--num-workers", "DDP workers under Ray Train (1: train in this process)",
                               AT_LEAST_ONE)

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass(frozen=True)
class Cluster(Record):
    """Where a run's Ray work runs (``address``: a cluster's head, from --address or RAY_ADDRESS; None: a Ray of
    this process's own) and how many times a Ray trial or Ray Train run whose process or node died starts again.
    Not part of any job or search record: a resumed run may run on another cluster, with another policy."""
    address: str | None = None
    max_failures: int = setting(MAX_FAILURES, "--max-failures", "times a Ray trial or Ray Train run whose process or "
                                "node died (or that failed) starts again, from its last epoch where it has one",
                                NON_NEGATIVE)

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass(frozen=True)
class TrialResources:
    """What one Ray trial holds: CPUs and (a fraction of, or whole) GPUs."""
    cpus: float = cpus_per_trial_setting()
    gpus: float = gpus_per_trial_setting()

    def __post_init__(self) -> None:
        # Ray's own errors for these are tracebacks (for 0 CPUs and 0 GPUs: "Cannot initialize a ResourceRequest
        # with an empty head").
        if not (math.isfinite(self.cpus) and math.isfinite(self.gpus)) or self.cpus < 0 or self.gpus < 0:
            raise UserError(f"--cpus-per-trial and --gpus-per-trial cannot be negative (got {self.cpus:g} and "
                            f"{self.gpus:g})")
        if self.cpus == 0 and self.gpus == 0:
            raise UserError("--cpus-per-trial 0 with no GPU gives a trial no resources: give it CPUs (e.g. 1) or GPUs")
        if self.gpus > 1 and self.gpus != int(self.gpus):
            raise UserError(f"--gpus-per-trial {self.gpus:g}: above 1 it must be a whole number "
                            f"(Ray shares only fractions of one GPU)")


@dataclass
class SearchConfig(Record):
    budget_flops: float
    latency_budget_s: float | None = None
    sampler: str = setting("tpe", "--sampler", "Optuna sampler", choices=SEARCH_SAMPLERS)
    trials: int = setting(32, "--trials", "archs to evaluate", AT_LEAST_ONE)
    seed: int = setting(0, "--seed", "search seed: the sampler and the BatchNorm recalibration batches (the "
                        "supernet's own training seed is --supernet-seed)")
    latency: str = setting("lut", "--latency", "lut: predict from a per-device table of measured blocks (built once, "
                           "cached under results/latency); measure: time every arch", choices=LATENCY_METHODS)
    latency_batch: int = setting(1, "--latency-batch", "batch size of latency measurements", AT_LEAST_ONE)
    latency_table: str | None = setting(None, "--latency-table", "predict latency with this table, written by "
                                        "latency-table on the machine the model will run on (default: a table "
                                        "measured here, cached under results/latency)", type=str, metavar="FILE")
    cpus_per_trial: float = cpus_per_trial_setting()
    gpus_per_trial: float = gpus_per_trial_setting()
    max_concurrent: int = setting(2, "--max-concurrent", "trials at once", AT_LEAST_ONE)
    recalib_batches: int = recalib_batches_setting()
    finetune_steps: int = finetune_steps_setting()
    ordered: bool = True           # tell results in suggestion order: the same seed gives the same trials
    score: str = score_setting()
    seed_models: bool = setting(False, "--seed-models", "first evaluate the seed papers' models that are points of "
                                "the space (Swin-T, DWNet-T, dynamic DWNet-T), each as one of the trials, so the "
                                "results hold them beside what the search finds (one over the budget is rejected)")

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.sampler not in SEARCH_SAMPLERS:
            raise UserError(f"unknown sampler {self.sampler!r} (choose from {', '.join(SEARCH_SAMPLERS)})")
        if self.latency not in LATENCY_METHODS:
            raise UserError(f"--latency {self.latency}: choose from {', '.join(LATENCY_METHODS)}")
        check_score(self.score, self.finetune_steps)
        if self.latency_table is not None and self.latency != "lut":
            raise UserError("--latency-table with --latency measure: the table predicts latency, measure times each "
                            "arch here; choose one")
        TrialResources(self.cpus_per_trial, self.gpus_per_trial)

    @property
    def budget(self) -> Budget:
        """The hard limits of the search, asked by every place that decides "over budget"."""
        return Budget(flops=self.budget_flops, latency_s=self.latency_budget_s)

    @property
    def resources(self) -> TrialResources:
        return TrialResources(self.cpus_per_trial, self.gpus_per_trial)

    @property
    def top1_weights(self) -> str:
        """What the weights an arch is scored with are, in the words the output files use."""
        if self.finetune_steps:
            return f"inherited, then {self.finetune_steps} fine-tuning steps alone on the train split"
        return "inherited as they are"



LATENCY_BACKENDS = ("torch", "onnxruntime")  # nas.latency.backends.BACKENDS


@dataclass(frozen=True)
class LatencyConfig(Record):
    """How a latency table is measured: the backend and device that run the components, the batch and threads."""
    backend: str = setting("torch", "--backend", "what runs the networks: torch (eager on a CPU, a CUDA graph on a "
                           "GPU) or onnxruntime (ONNX Runtime's CPU execution provider, each component exported as "
                           "`export` exports a network)", choices=LATENCY_BACKENDS)
    device: str = setting("cpu", "--device", "where the networks run", choices=("cpu", "cuda"))
    batch_size: int = setting(1, "--batch", "images per forward pass", AT_LEAST_ONE)
    threads: int | None = setting(None, "--threads", "intra-op threads (default: torch's on this machine, one per "
                                  "core)", AT_LEAST_ONE, type=int)
    warmup: int = setting(2, "--warmup", "untimed rounds before the timed ones", NON_NEGATIVE)
    repeats: int = setting(5, "--repeats", "timed rounds; each entry is their median", AT_LEAST_ONE)

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.backend == "onnxruntime" and self.device != "cpu":
            raise UserError("--backend onnxruntime times ONNX Runtime's CPU execution provider: use --device cpu")


@dataclass
class RankingConfig(Record):
    budget_flops: float | None = None  # the band the archs are drawn from (None: not yet resolved)
    # K, when the archs are drawn: a ranking compares at least two
    archs: int = setting(16, "--archs", "how many archs, spread over the archs within --budget", Bound(2), metavar="K")
    seeds: int = setting(3, "--seeds", "stand-alone training seeds per arch", AT_LEAST_ONE)
    seed: int = setting(0, "--seed", "seed of the arch draw, recalibration and bootstrap")
    draws: int = DRAWS         # uniform draws of the space the K are taken from
    recalib_batches: int = recalib_batches_setting()
    finetune_steps: int = finetune_steps_setting()  # as the search evaluates
    score: str = score_setting()  # the score whose order is checked, as the search maximises it
    cpus_per_trial: float = cpus_per_trial_setting()

    def __post_init__(self) -> None:
        check_bounds(self)
        check_score(self.score, self.finetune_steps)
        TrialResources(self.cpus_per_trial)



__all__ = ["DATASETS", "DEFAULT_DATASET", "EMBEDDED_DATASETS", "PATH_SAMPLERS", "SEARCH_SAMPLERS", "SEARCH_SCORES",
           "AMP_MODES", "LATENCY_METHODS", "INITS", "ONNX_MIN_OPSET", "FINETUNE_STEPS", "MAX_FAILURES", "DRAWS", "DEFAULT_BUDGET", "Bound",
           "setting", "check_value", "check_bounds", "flag_of", "Record", "default_img_size", "DataConfig", "TrainConfig", "ModelOptions",
           "EVAL_ONLY_TRAIN_FIELDS", "SUPERNET_RECIPE", "SupernetJob", "RetrainJob", "RunOptions", "Cluster", "TrialResources", "SearchConfig", "LATENCY_BACKENDS", "LatencyConfig", "RankingConfig"]

"""Run configuration shared by the training commands: the network settings a dataset implies,
and the run folder naming that lets ``search`` find the supernet trained for its settings."""
from __future__ import annotations

import hashlib
import io
import json
import pickle
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nas.config import DataConfig, TrainConfig
from nas.errors import UserError
from searchspace import NetSettings, SearchSpace, format_flops

if TYPE_CHECKING:  # torch: only for type hints, so that a command line is checked without it
    from nas.data import DataBundle

RESULTS = Path("results")
MODEL = "model.pt"  # a retrain folder's model file
RANKING_DIR = "ranking"


def ranking_dir(supernet_path: str | Path) -> Path:
    """Where ``check-ranking`` writes a supernet's check: beside the supernet file."""
    return Path(supernet_path).parent / RANKING_DIR


def model_file(path: str | Path) -> Path:
    """The model file of a retrain folder (or the file itself); a missing one is a user error."""
    path = Path(path)
    file = path / MODEL if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"{path}: no retrained model here (expected {MODEL} from launch.py retrain)")
    return file


def checkpoint_file(path: str | Path) -> Path:
    """``path`` if it can be a checkpoint of ours; a missing file or one torch.save did not write is a user error.

    torch.save writes a zip archive: anything else is refused here in microseconds, before torch is imported
    (seconds); a zip that is no checkpoint is still refused by ``nas.checkpoint.load``."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a readable checkpoint (not a whole zip archive, as torch.save writes)")
    return path


class _Opaque:
    """Whatever a checkpoint holds besides plain data (a tensor, an RNG state): built, never looked at."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass


class _PlainDataUnpickler(pickle.Unpickler):
    """Builds plain containers and values; every other class is an ``_Opaque`` and nothing in the file runs."""

    PLAIN = {("collections", "OrderedDict"): OrderedDict}

    def find_class(self, module: str, name: str):
        return self.PLAIN.get((module, name), _Opaque)

    def persistent_load(self, pid):  # a tensor's storage: a separate entry of the archive, not read
        return None


def _plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


SUPERNET_RECORD = ("job", "space", "settings")  # what a supernet checkpoint holds besides its weights


def supernet_record(path: str | Path) -> dict:
    """A supernet checkpoint's job, space and network settings (``SUPERNET_RECORD``), read without torch:
    milliseconds instead of the seconds torch takes to import, so a command refuses a flag that contradicts them
    before its heavy imports.

    torch.save writes a zip archive whose ``<name>/data.pkl`` pickles the object, each tensor by reference to a
    storage kept in another entry. That pickle is read by an unpickler that builds only plain containers (any
    other class, a tensor included, comes out opaque, and no code of the file runs); the storages are not read.
    A file that is no supernet checkpoint (a supernet.pt or checkpoint.pt of ``launch.py supernet``) is a user
    error, as for ``nas.supernet_train.load_supernet_state``."""
    import zipfile

    path = checkpoint_file(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
            if len(names) != 1:
                raise ValueError("no data.pkl entry, as torch.save writes")
            obj = _PlainDataUnpickler(io.BytesIO(archive.read(names[0]))).load()
    except Exception as e:  # a truncated archive, a foreign pickle
        raise UserError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict) or not all(k in obj and _plain(obj[k]) for k in SUPERNET_RECORD):
        raise UserError(f"{path}: not a supernet checkpoint")
    return {k: obj[k] for k in SUPERNET_RECORD}


@dataclass
class ModelOptions:
    """Width and patch of the trained network; None picks by input size (small images: C=16, patch 2)."""
    embed_dim: int | None = None
    patch_size: int | None = None
    drop_path_rate: float = 0.0

    def resolve(self, img_size: int) -> tuple[int, int]:
        """(embed_dim, patch_size) for inputs of side ``img_size``; a patch that does not tile it raises UserError
        (the commands call this before torch is imported)."""
        small = img_size <= 64
        embed_dim, patch_size = self.embed_dim or (16 if small else 96), self.patch_size or (2 if small else 4)
        if img_size % patch_size:
            raise UserError(f"--img-size {img_size} with --patch-size {patch_size}: the input side must be a "
                            f"multiple of the stem's patch")
        return embed_dim, patch_size

    def settings(self, data: DataBundle) -> NetSettings:
        embed_dim, patch_size = self.resolve(data.img_size)
        return NetSettings(img_size=data.img_size, in_chans=data.in_chans, num_classes=data.num_classes,
                           embed_dim=embed_dim, patch_size=patch_size, drop_path_rate=self.drop_path_rate)


# Settings that only change how a supernet is evaluated, not its weights: they never pick another supernet.
EVAL_ONLY_TRAIN_FIELDS = ("recalib_batches", "eval_batch_size")


@dataclass
class SupernetJob:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelOptions = field(default_factory=ModelOptions)
    path_sampler: str = "spos"
    space: dict = field(default_factory=lambda: SearchSpace.default().to_dict())
    path_budget_flops: float | None = None  # train only paths within this many FLOPs (deployment setting)
    # The sandwich's largest path teaches the others each step (BigNAS / OFA in-place distillation)
    inplace_distill: bool = False

    def __post_init__(self) -> None:
        if self.inplace_distill and self.path_sampler != "sandwich":
            raise UserError(f"in-place distillation needs the sandwich sampler (its largest path is the teacher), "
                            f"not {self.path_sampler!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.inplace_distill:  # off: left out, so the supernets trained before it existed keep their names
            del d["inplace_distill"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SupernetJob":
        return cls(DataConfig.from_dict(d["data"]), TrainConfig(**d["train"]), ModelOptions(**d["model"]),
                   d["path_sampler"], d["space"], d.get("path_budget_flops"), d.get("inplace_distill", False))

    def fingerprint(self) -> str:
        """Hash of everything that determines the trained weights (not how many workers ran it, nor the
        evaluation-only settings)."""
        d = self.to_dict()
        for name in EVAL_ONLY_TRAIN_FIELDS:
            d["train"].pop(name, None)
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]

    def default_run_dir(self, results: Path = RESULTS) -> Path:
        band = "" if self.path_budget_flops is None else f"-under{format_flops(self.path_budget_flops)}"
        return results / "supernet" / f"{self.data.dataset}-{self.path_sampler}{band}-{self.fingerprint()}"

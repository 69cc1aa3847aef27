"""What a supernet checkpoint records besides its weights (the job, the space, the network settings), as a typed
record, read without torch: milliseconds instead of the seconds torch takes to import, so a command refuses a flag
that contradicts a supernet before its heavy imports."""
from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from nas.errors import UserError
from nas.runs.layout import checkpoint_file
from nas.runs.migrate import migrate
from nas.settings import SupernetJob
from searchspace import NetSettings, SearchSpace

SUPERNET_RECORD = ("job", "space", "settings")  # the keys of a supernet checkpoint besides its weights


@dataclass(frozen=True)
class SupernetRecord:
    job: SupernetJob          # how it was trained: data, recipe, network options, path sampler and budget
    space: SearchSpace        # the space its paths cover
    settings: NetSettings     # the network it is: input side, channels, classes, width, patch

    @classmethod
    def from_state(cls, state: dict, source: str | Path = "supernet") -> "SupernetRecord":
        """From a checkpoint's content (``state``: loaded by torch, or read by :func:`read_supernet_record`)."""
        return cls(SupernetJob.from_dict(migrate("supernet job", state["job"])),
                   SearchSpace.from_dict(state["space"], source=f"{source} space"),
                   NetSettings.from_dict(state["settings"]))

    def to_state(self) -> dict:
        """The record's part of a checkpoint, as written beside the weights."""
        return {"job": self.job.to_dict(), "space": self.space.to_dict(), "settings": self.settings.to_dict()}


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


def read_supernet_record(path: str | Path) -> SupernetRecord:
    """A supernet checkpoint's job, space and network settings (``SUPERNET_RECORD``), read without torch.

    torch.save writes a zip archive whose ``<name>/data.pkl`` pickles the object, each tensor by reference to a
    storage kept in another entry. That pickle is read by an unpickler that builds only plain containers (any
    other class, a tensor included, comes out opaque, and no code of the file runs); the storages are not read.
    A file that is no supernet checkpoint (a supernet.pt or checkpoint.pt of ``launch.py supernet``) is a user
    error, as for ``nas.train.supernet.load_supernet_state``."""
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
    try:
        return SupernetRecord.from_state(obj, path)
    except (KeyError, TypeError, ValueError) as e:  # the keys are there, their content is not a supernet's
        raise UserError(f"{path}: not a supernet checkpoint ({type(e).__name__}: {e})") from None

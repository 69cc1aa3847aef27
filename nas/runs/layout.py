"""Where a run's files live: the results folder, the file names each command writes, and the look-ups of them
that refuse a wrong path in one line. No torch: the commands call these before their heavy imports."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

from nas.errors import UserError

RESULTS = Path("results")     # the storage when --storage is not given (nas.runs.storage)
MODEL = "model.pt"              # a retrain folder's model file: what nas.hub.load_model reads
RANKING_DIR = "ranking"         # a supernet's ranking checks, beside it
SUPERNET = "supernet.pt"        # a supernet run's final weights, settings and space: what a search loads
CHECKPOINT = "checkpoint.pt"    # every training run's last epoch (atomic), what --resume continues
METRICS = "metrics.csv"         # a training run's history, one row an epoch
RUN_CONFIG = "config.json"      # every run's settings, written before any work
LATENCY_TABLE = "latency_table.json"  # a search's copy of the table given with --latency-table
SUGGESTIONS = "suggestions.jsonl"  # a search's suggestions, in order: each became a trial or was rejected
OLD_SUGGESTIONS = "rejected.jsonl"  # its name in older searches, which still resume
RANKING_SUMMARY = "ranking.json"


def cache_root() -> Path:
    """This machine's cache: storage mirrors and decoded image folders ($MIXERNAS_CACHE, else ~/.cache/mixernas)."""
    return Path(os.path.abspath(os.environ.get("MIXERNAS_CACHE") or Path.home() / ".cache" / "mixernas"))


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
    (seconds); a zip that is no checkpoint is still refused by ``nas.runs.checkpoint.load``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a readable checkpoint (not a whole zip archive, as torch.save writes)")
    return path


def suggestions_file(search_dir: Path) -> Path:
    """A search's log of suggestions (under its old name in older searches)."""
    path = Path(search_dir) / SUGGESTIONS
    old = Path(search_dir) / OLD_SUGGESTIONS
    return old if not path.exists() and old.exists() else path

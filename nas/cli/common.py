"""Arguments and helpers shared by several subcommands."""
from __future__ import annotations

import argparse
import os
import tempfile
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


def check_trial_fits_here(cpus: float, gpus: float, gpus_here: int) -> None:
    """Refuse a trial bigger than this machine, before any work: a local Ray would keep it pending forever.
    (``nas.cluster.session.check_fits_local_ray`` checks again against what Ray itself counted.)"""
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


def add_storage_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--storage", default=None, metavar="PATH|URI",
                        help="where runs live and Ray keeps their state and checkpoints: a folder (on a cluster, one "
                             "every node mounts) or a URI pyarrow opens (s3://bucket/prefix, gs://..., file:///path), "
                             "mirrored in ~/.cache/mixernas; a relative --run-dir/--search-dir/--arch is then a name "
                             "under it (default: results/)")


def open_run(args: argparse.Namespace, folder: str | Path):
    """The command's run in ``folder``, opened once: its ``--storage``, and the Ray cluster of ``--address`` with the
    failure policy of ``--max-failures`` (both checked by ``nas.cli.main``); what the storage holds of the folder is
    fetched here."""
    from nas.runs.run import Run

    return Run.open(folder, args.storage, args.cluster)


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

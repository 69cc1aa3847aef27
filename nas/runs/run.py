"""A run: one folder of work, the storage it lives in, and the Ray cluster its work runs on.

A command opens its run once (``Run.open``) and hands that one object down: the trainers, the search driver and
the parallel stand-alone runs read the folder, the Ray address and the failure policy from it, and send their
files to the storage through it (``sync`` at each epoch and trial event, and when the run is closed), so no call
site pushes or pulls a storage by hand. Under a local storage the folder is the truth and syncing does nothing;
under a URI storage the folder is this machine's mirror, fetched when the run is opened and sent back as it
changes. A run is picklable: unpickled in a Ray worker on another node, its folder is that node's mirror of the
same place. No torch and no Ray here.
"""
from __future__ import annotations

from pathlib import Path

from nas.runs.storage import Storage
from nas.settings import Cluster


class Run:
    """The folder ``folder`` of ``storage`` (a path in this process's mirror under a URI storage), worked on by
    ``cluster``. Use it as a context manager: what the run wrote reaches the storage when it closes, also after an
    error or Ctrl-C, so the next ``--resume`` (wherever it runs) starts from there."""

    def __init__(self, folder: str | Path, storage: Storage | None = None, cluster: Cluster = Cluster()) -> None:
        self.folder = Path(folder)
        self.storage = storage if storage is not None else Storage(self.folder)
        self.cluster = cluster

    @classmethod
    def open(cls, folder: str | Path, storage: Storage, cluster: Cluster = Cluster()) -> "Run":
        """The run in ``folder``, with what the storage holds of it fetched here."""
        run = cls(folder, storage, cluster)
        run.fetch()
        return run

    def __getstate__(self) -> dict:
        return {"folder": self.folder, "storage": self.storage, "cluster": self.cluster}

    def __setstate__(self, state: dict) -> None:
        # A folder in this URI's mirror on the machine that pickled the run is the same folder in this machine's.
        storage = state["storage"]
        self.__init__(storage.here(state["folder"]), storage, state["cluster"])

    def __repr__(self) -> str:
        return f"Run({str(self.folder)!r}, {self.storage!r}, {self.cluster})"

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        self.sync()

    # --- other runs in the same place ---------------------------------------------------------------------------
    def sub(self, name: str) -> "Run":
        """A run in a folder under this one (a trial's, a stand-alone run's), on the same storage and cluster."""
        return self.beside(self.folder / name)

    def beside(self, folder: str | Path) -> "Run":
        """A run in another folder of the same storage and cluster (a supernet a search trains first)."""
        return Run(folder, self.storage, self.cluster)

    # --- files --------------------------------------------------------------------------------------------------
    def path(self, *names: str) -> Path:
        return self.folder.joinpath(*names)

    def fetch(self, *names: str) -> Path:
        """``path(*names)`` (the run folder itself without names), as the storage holds it now."""
        path = self.path(*names)
        self.storage.pull(path)
        return path

    def sync(self, *names: str) -> None:
        """Send what changed in the folder (or only in its files or folders ``names``) to the storage, each file
        whole; nothing to do for a local storage."""
        for path in [self.path(n) for n in names] or [self.folder]:
            self.storage.push(path)

    def ray_storage(self) -> tuple[str, object | None]:
        """(storage_path, storage_filesystem) for the Ray RunConfig of this run's Tune or Train experiment."""
        return self.storage.ray_storage(self.folder)


__all__ = ["Run", "Cluster"]

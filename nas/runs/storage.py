"""``--storage PATH|URI``: where a command keeps its runs, and where Ray keeps their state and checkpoints.

A PATH (default ``results``; on a cluster, a folder every node mounts) is used as it is: every run folder lives
under it and Ray's storage is each run folder's ``ray/``. A URI (``s3://bucket/prefix``, ``gs://...``,
``file:///abs/path``: anything ``pyarrow.fs.FileSystem.from_uri`` opens) is the storage itself: Ray Tune and Ray
Train write their state and checkpoints there directly, and this process works in a local mirror folder whose run
folders it pushes to the URI after every trial event and epoch, and pulls from it before a ``--resume``. So a
driver on another machine, given the same ``--storage``, resumes what the first one left. No torch here: the
command line checks a storage before its heavy imports; pyarrow is imported only for a URI.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from nas.errors import UserError, first_line
from nas.runs.layout import RESULTS, cache_root

RAY_FOLDER = "ray"  # a run folder's Ray storage (a local storage only: a URI storage holds it beside the mirror)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(value: str) -> bool:
    return bool(_URI.match(value))


def mirror_root(uri: str) -> Path:
    """The local folder that mirrors ``uri`` in this process (MIXERNAS_CACHE, else ~/.cache/mixernas)."""
    cache = cache_root()
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", uri.split("?", 1)[0])[-60:].strip("_")
    return cache / "storage" / f"{readable}-{hashlib.sha1(uri.encode()).hexdigest()[:10]}"


class Storage:
    """A parsed ``--storage``: ``root`` is the folder this process reads and writes runs in; ``uri``, when set, the
    remote storage that ``root`` mirrors. Picklable (a Ray Train worker pushes its run folder itself)."""

    def __init__(self, root: str | Path, uri: str | None = None, *, given: bool = False) -> None:
        self.root, self.uri, self.given = Path(root), uri, given
        self._filesystem = None
        self._pushed: dict[str, tuple[int, int]] = {}  # local file -> (size, mtime_ns) when last pushed or pulled

    def __getstate__(self) -> dict:
        return {"root": self.root, "uri": self.uri, "given": self.given}

    def __setstate__(self, state: dict) -> None:
        # A URI storage unpickled in another process (a Ray worker on another node, a driver that resumes) mirrors
        # into that machine's cache: map the paths it is handed with here().
        root = mirror_root(state["uri"]) if state["uri"] else state["root"]
        self.__init__(root, state["uri"], given=state["given"])

    def __repr__(self) -> str:
        return f"Storage({self.uri or str(self.root)!r})"

    @classmethod
    def parse(cls, value: str | None) -> "Storage":
        """``--storage`` as given (None: the default ``results``), checked: a URI must open and take a file, a
        folder must be writable; else UserError, before any work."""
        if value is None:
            return cls(RESULTS)
        if not value.strip():
            raise UserError("--storage '': expected a folder or a URI such as s3://bucket/prefix")
        if not is_uri(value):
            return cls(value, given=True)
        storage = cls(mirror_root(value), value, given=True)
        storage.check_reachable()
        return storage

    # --- paths -------------------------------------------------------------------------------------------------
    def run_path(self, flag_value: str | None, default: Path) -> Path:
        """A run folder: ``default`` (under root) when the flag is not given; a relative flag value names a folder
        under the storage when --storage was given (under a URI storage it must), else under the working folder."""
        if flag_value is None:
            return default
        path = Path(flag_value)
        if self.uri and path.is_absolute():
            raise UserError(f"{flag_value}: with --storage {self.uri} a run folder is a name under it (a relative "
                            f"path), not an absolute path")
        return path if path.is_absolute() or not self.given else self.root / path

    def relative(self, path: str | Path) -> str | None:
        """``path`` relative to the storage root (POSIX form), or None when it lies outside."""
        try:
            return Path(os.path.abspath(path)).relative_to(os.path.abspath(self.root)).as_posix()
        except ValueError:
            return None

    def file_path(self, flag_value: str) -> Path:
        """A file named on the command line (--arch, --pareto, --supernet): the path as given where it exists;
        else, with --storage given, a relative name is a file under the storage (under a URI, fetched into the
        mirror)."""
        path = Path(flag_value)
        if not self.given or path.is_absolute() or path.exists():
            return path
        local = self.root / path
        self.pull(local)
        return local

    def here(self, path: str | Path) -> Path:
        """``path`` as this process mirrors it: a path in this URI's mirror on another machine (the mirror folder's
        name is the URI's own) becomes the same path in this machine's mirror; any other path is kept."""
        path = Path(path)
        if not self.uri or self.root.name not in path.parts:
            return path
        parts = path.parts
        return self.root.joinpath(*parts[len(parts) - parts[::-1].index(self.root.name):])

    def localize(self, recorded: str | Path) -> Path:
        """A path a run file recorded (a supernet, a search run): under a URI storage, when it lies in a mirror of
        this URI, the same file in this machine's mirror (see here()), fetched from the URI, which holds the truth;
        else the path as it is."""
        local = self.here(recorded)
        if local != Path(recorded):
            self.pull(local)
        return local

    def latest_run(self, pattern: str, marker: str) -> Path | None:
        """The last (by name) folder under the root matching ``pattern`` that holds ``marker``; under a URI storage
        looked up there, its folder fetched."""
        if self.uri:
            import pyarrow.fs

            fs, base = self.filesystem(), self._base
            names = sorted((PurePosixPath(i.path).name for i in fs.get_file_info(pyarrow.fs.FileSelector(
                base, allow_not_found=True)) if i.type == pyarrow.fs.FileType.Directory), reverse=True)
            for name in (n for n in names if Path(n).match(pattern)):
                if fs.get_file_info(f"{base.rstrip('/')}/{name}/{marker}").type == pyarrow.fs.FileType.File:
                    self.pull(self.root / name)
                    return self.root / name
            return None
        runs = sorted(p for p in self.root.glob(pattern) if (p / marker).exists())
        return runs[-1] if runs else None

    def ray_storage(self, run_dir: str | Path) -> tuple[str, object | None]:
        """(storage_path, storage_filesystem) for a Ray RunConfig of the run in ``run_dir``."""
        if not self.uri:
            return str((Path(run_dir) / RAY_FOLDER).resolve()), None
        return self._remote_path(run_dir, RAY_FOLDER), self.filesystem()

    # --- the remote side ---------------------------------------------------------------------------------------
    def filesystem(self):
        """The pyarrow filesystem of the URI (opened once)."""
        if self._filesystem is None:
            import pyarrow.fs

            try:
                self._filesystem, self._base = pyarrow.fs.FileSystem.from_uri(self.uri)
            except (ValueError, OSError) as e:  # ArrowInvalid is a ValueError
                raise UserError(f"--storage {self.uri}: {first_line(e)}") from None
        return self._filesystem

    def _remote_path(self, local: str | Path, *more: str) -> str:
        self.filesystem()
        relative = self.relative(local)
        if relative is None:
            raise UserError(f"{local}: outside the storage's mirror {self.root}")
        parts = [p for p in (relative, *more) if p not in ("", ".")]
        return str(PurePosixPath(self._base, *parts))

    def check_reachable(self) -> None:
        """Write and delete a small file at the URI: a wrong scheme, bucket, credential or endpoint is one line."""
        fs = self.filesystem()
        probe = f"{self._base.rstrip('/')}/.mixernas-probe-{os.getpid()}"
        try:
            fs.create_dir(self._base, recursive=True)
            with fs.open_output_stream(probe) as out:
                out.write(b"ok")
            fs.delete_file(probe)
        except (OSError, ValueError) as e:
            raise UserError(f"--storage {self.uri}: cannot write there ({first_line(e)})") from None

    def push(self, local_dir: str | Path, *, skip: tuple[str, ...] = (RAY_FOLDER,)) -> int:
        """Copy the files of ``local_dir`` that changed since the last push (or pull) to the URI; each lands whole
        (written beside, then moved). Returns how many were copied; nothing to do for a local storage."""
        if not self.uri:
            return 0
        local_dir = Path(local_dir)
        if local_dir.is_file():
            files = [local_dir]
        else:
            files = [p for p in sorted(local_dir.rglob("*")) if p.is_file() and not _is_temp(p)
                     and p.relative_to(local_dir).parts[0] not in skip]
        fs, copied = self.filesystem(), 0
        for path in files:
            try:
                stat = path.stat()
            except FileNotFoundError:  # replaced by an atomic write as we listed
                continue
            key = (stat.st_size, stat.st_mtime_ns)
            if self._pushed.get(str(path)) == key:
                continue
            target = self._remote_path(path)
            fs.create_dir(str(PurePosixPath(target).parent), recursive=True)
            partial = f"{target}.part-{os.getpid()}"
            with open(path, "rb") as source, fs.open_output_stream(partial) as out:
                shutil.copyfileobj(source, out, 1 << 20)
            fs.move(partial, target)
            self._pushed[str(path)] = key
            copied += 1
        return copied

    def pull(self, local_dir: str | Path, *, skip: tuple[str, ...] = (RAY_FOLDER,)) -> int:
        """Copy ``local_dir``'s counterpart at the URI (a folder or one file) here, where it differs from the local
        copy; each file is written beside and renamed. Returns how many were copied."""
        if not self.uri:
            return 0
        import pyarrow.fs

        fs, local_dir = self.filesystem(), Path(local_dir)
        remote = self._remote_path(local_dir)
        info = fs.get_file_info(remote)
        if info.type == pyarrow.fs.FileType.File:
            entries, base = [info], str(PurePosixPath(remote).parent)
            local_dir = local_dir.parent
        elif info.type == pyarrow.fs.FileType.Directory:
            entries, base = fs.get_file_info(pyarrow.fs.FileSelector(remote, recursive=True)), remote
        else:
            return 0
        copied = 0
        for entry in entries:
            relative = PurePosixPath(entry.path).relative_to(base)
            if entry.type != pyarrow.fs.FileType.File or relative.parts[0] in skip or ".part-" in relative.name:
                continue
            path = local_dir / relative
            if path.is_file() and path.stat().st_size == entry.size and self._pushed.get(str(path)):
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
                with fs.open_input_stream(entry.path) as source:
                    shutil.copyfileobj(source, tmp, 1 << 20)
            os.replace(tmp.name, path)
            stat = path.stat()
            self._pushed[str(path)] = (stat.st_size, stat.st_mtime_ns)
            copied += 1
        return copied

    def pulled(self, local: str | Path) -> Path:
        """``local``, after fetching its counterpart at the URI (if any)."""
        self.pull(local)
        return Path(local)

    def describe(self) -> str:
        return f"{self.uri} (mirrored in {self.root})" if self.uri else str(self.root)


def _is_temp(path: Path) -> bool:
    """A file being written by an atomic write (ours: .name.*; torch's and others': *.tmp)."""
    return path.name.startswith(".") or path.suffix in (".tmp", ".part")

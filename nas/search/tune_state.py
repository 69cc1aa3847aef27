"""Tune's experiment state, kept whole: one file per save, so a resume always reads one save.

Tune saves its state as several files (the trial table, the search wrappers' state with the budget guard's, the
Optuna searcher, the callbacks) into the driver's staging folder, and copies them to the run's storage one by one
in the background. A driver killed during that copy leaves a mix of two saves there: a trial table older than its
searcher, or the other way round, which Tune cannot resume (a trial the searcher never heard of, or one it waits
for forever). So after each save the newest save's files are bundled into one archive in the run folder, written
whole and sent to the storage as one file (:meth:`nas.runs.run.Run.sync`); before a resume, the bundle's files
replace whatever state files Tune's experiment folder holds. A kill at any moment leaves either the previous
bundle or the new one, each a complete save.
"""
from __future__ import annotations

import fnmatch
import io
import zipfile
from pathlib import Path, PurePosixPath

from nas.runs.run import Run
from searchspace import atomic_path

BUNDLE = "tune_state.zip"
# Each save's files share the session's suffix: experiment_state-<session>.json and so on.
STATE_FILES = ("experiment_state-{}.json", "search_gen_state-{}.json", "searcher-state-{}.pkl",
               "callback-states-{}.pkl")


def _is_state_file(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern.format("*")) for pattern in STATE_FILES)


def bundle_saved_state(staging_folder: str | Path, run: Run) -> None:
    """Bundle the newest save in ``staging_folder`` into ``run``'s folder and send it to the run's storage."""
    folder = Path(staging_folder)
    states = sorted(folder.glob(STATE_FILES[0].format("*")))
    if not states:
        return
    session = states[-1].name[len("experiment_state-"):-len(".json")]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for pattern in STATE_FILES:
            path = folder / pattern.format(session)
            if path.exists():
                archive.writestr(path.name, path.read_bytes())
    with atomic_path(run.path(BUNDLE)) as tmp:
        Path(tmp).write_bytes(buffer.getvalue())
    run.sync(BUNDLE)


def restore_saved_state(run: Run, experiment_path: str, filesystem=None) -> bool:
    """Replace the state files in Tune's experiment folder (``experiment_path``, on ``filesystem``: None for a
    local path) by the run's last bundle; False, touching nothing, when the run has none (a search saved before
    bundles existed resumes from Tune's files as they are)."""
    import pyarrow.fs

    bundle = run.fetch(BUNDLE)
    if not bundle.exists():
        return False
    fs = filesystem if filesystem is not None else pyarrow.fs.LocalFileSystem()
    fs.create_dir(experiment_path, recursive=True)
    for info in fs.get_file_info(pyarrow.fs.FileSelector(experiment_path)):
        if info.type == pyarrow.fs.FileType.File and _is_state_file(info.base_name):
            fs.delete_file(info.path)
    with zipfile.ZipFile(bundle) as archive:
        for name in archive.namelist():
            with fs.open_output_stream(str(PurePosixPath(experiment_path, name))) as out:
                out.write(archive.read(name))
    return True


__all__ = ["BUNDLE", "bundle_saved_state", "restore_saved_state"]

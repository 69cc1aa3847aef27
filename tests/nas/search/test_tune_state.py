"""Tune's state kept whole (issue #50 item 2): a resume reads one save, whatever a killed copy left."""
from __future__ import annotations

from nas.runs.run import Run
from nas.runs.storage import Storage
from nas.search.tune_state import BUNDLE, bundle_saved_state, restore_saved_state


def write(folder, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def test_the_newest_save_is_bundled_and_replaces_every_state_file_a_torn_copy_left(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXERNAS_CACHE", str(tmp_path / "machine-a"))
    storage = Storage.parse(f"file://{tmp_path / 'bucket'}")
    run = Run(storage.root / "s", storage)
    run.folder.mkdir(parents=True)
    staging = tmp_path / "staging"
    write(staging, {"experiment_state-2026-01-01_10-00-00.json": "old table",  # a resumed driver's earlier session
                    "searcher-state-2026-01-01_10-00-00.pkl": "old searcher",
                    "experiment_state-2026-01-02_10-00-00.json": "table 7", "search_gen_state-2026-01-02_10-00-00.json":
                    "guard 7", "searcher-state-2026-01-02_10-00-00.pkl": "searcher 7", "tuner.pkl": "not a save"})
    bundle_saved_state(staging, run)
    assert (tmp_path / "bucket" / "s" / BUNDLE).exists()  # sent to the storage as it was written

    # the storage's experiment folder after a copy cut off between two saves: the table of save 6, the searcher of 7
    experiment = tmp_path / "bucket" / "s" / "ray" / "tune"
    write(experiment, {"experiment_state-2026-01-02_10-00-00.json": "table 6",
                       "searcher-state-2026-01-02_10-00-00.pkl": "searcher 7",
                       "experiment_state-2026-01-01_10-00-00.json": "old table", "tuner.pkl": "kept",
                       "search_gen_state-2026-01-02_10-00-00.json.part-1": "kept"})
    monkeypatch.setenv("MIXERNAS_CACHE", str(tmp_path / "machine-b"))  # a driver elsewhere resumes
    elsewhere = Storage.parse(storage.uri)
    assert restore_saved_state(Run(elsewhere.root / "s", elsewhere), str(experiment), elsewhere.filesystem())
    assert {p.name: p.read_text() for p in experiment.iterdir()} == {
        "experiment_state-2026-01-02_10-00-00.json": "table 7", "search_gen_state-2026-01-02_10-00-00.json": "guard 7",
        "searcher-state-2026-01-02_10-00-00.pkl": "searcher 7", "tuner.pkl": "kept",
        "search_gen_state-2026-01-02_10-00-00.json.part-1": "kept"}


def test_a_run_saved_before_bundles_resumes_from_tunes_files_as_they_are(tmp_path):
    experiment = tmp_path / "s" / "ray" / "tune"
    write(experiment, {"experiment_state-x.json": "table"})
    assert not restore_saved_state(Run(tmp_path / "s"), str(experiment))
    assert (experiment / "experiment_state-x.json").read_text() == "table"
    bundle_saved_state(tmp_path / "empty-staging", Run(tmp_path / "s"))  # nothing saved yet: nothing bundled
    assert not (tmp_path / "s" / BUNDLE).exists()

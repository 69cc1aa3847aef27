"""The run object (issue #50 item 1): a folder, its storage and its cluster, opened once and handed down."""
from __future__ import annotations

import pickle

import pytest

from nas.cli import main
from nas.cli import retrain as retrain_cmd
from nas.cli.common import open_run
from nas.runs.run import Run
from nas.runs.storage import Storage
from nas.settings import MAX_FAILURES, Cluster


@pytest.fixture
def uri_storage(tmp_path, monkeypatch) -> Storage:
    monkeypatch.setenv("MIXERNAS_CACHE", str(tmp_path / "machine-a"))
    return Storage.parse(f"file://{tmp_path / 'bucket'}")


def test_a_run_on_a_folder_is_the_folder_itself_with_ray_state_under_it(tmp_path):
    run = Run(tmp_path / "supernet")
    assert run.cluster == Cluster(None, MAX_FAILURES)
    assert run.ray_storage() == (str(tmp_path / "supernet" / "ray"), None)
    with run:
        run.folder.mkdir()
        run.path("config.json").write_text("{}")
    assert run.fetch("config.json") == tmp_path / "supernet" / "config.json"  # nothing to fetch: it is here


def test_what_a_run_writes_reaches_the_uri_when_it_closes_even_after_an_error(uri_storage, tmp_path):
    run = Run.open(uri_storage.root / "retrain-x", uri_storage, Cluster(max_failures=1))
    run.folder.mkdir(parents=True)
    run.path("config.json").write_text('{"job": 1}')
    with pytest.raises(KeyboardInterrupt):
        with run:
            run.path("metrics.csv").write_text("epoch\n1\n")
            raise KeyboardInterrupt  # Ctrl-C mid-run: what was written is not lost
    bucket = tmp_path / "bucket" / "retrain-x"
    assert sorted(p.name for p in bucket.iterdir()) == ["config.json", "metrics.csv"]
    sub = run.sub("member-1")
    sub.folder.mkdir()
    sub.path("model.pt").write_bytes(b"weights")
    run.sync("member-1")  # only what is named
    assert (bucket / "member-1" / "model.pt").read_bytes() == b"weights"
    assert sub.cluster == run.cluster and sub.storage is run.storage


def test_a_run_unpickled_on_another_machine_is_its_mirror_of_the_same_folder(uri_storage, tmp_path, monkeypatch):
    run = Run(uri_storage.root / "search-1", uri_storage, Cluster("10.0.0.1:6379", 2))
    run.folder.mkdir(parents=True)
    run.path("suggestions.jsonl").write_text("{}\n")
    run.sync()
    blob = pickle.dumps(run)

    monkeypatch.setenv("MIXERNAS_CACHE", str(tmp_path / "machine-b"))
    there = pickle.loads(blob)  # a Ray worker's or a resuming driver's copy
    assert there.folder != run.folder and there.folder.parts[-1] == "search-1"
    assert str(there.folder).startswith(str(tmp_path / "machine-b"))
    assert there.cluster == Cluster("10.0.0.1:6379", 2)
    assert there.fetch("suggestions.jsonl").read_text() == "{}\n"
    assert Run.open(there.folder, there.storage).path("suggestions.jsonl").exists()


def test_a_command_opens_its_run_with_the_storage_address_and_failure_policy_it_was_given(tmp_path, monkeypatch):
    opened = []
    monkeypatch.setattr(retrain_cmd, "run", lambda args: opened.append(open_run(args, tmp_path / "retrain-a")))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main(["retrain", "--arch", "a.json", "--max-failures", "1", "--storage", str(tmp_path)]) == 0
    run, = opened
    assert (run.folder, run.storage.root, run.cluster) == (tmp_path / "retrain-a", tmp_path, Cluster(None, 1))

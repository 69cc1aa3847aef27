"""``--storage``: a folder used as it is, or a URI mirrored through a real pyarrow filesystem (issue #44, item 1)."""
from __future__ import annotations

import os
import pickle

import pytest

from nas.errors import UserError
from nas.runs.storage import Storage, mirror_root


@pytest.fixture
def uri_storage(tmp_path, monkeypatch) -> Storage:
    monkeypatch.setenv("MIXERNAS_CACHE", str(tmp_path / "machine-a"))
    return Storage.parse(f"file://{tmp_path / 'bucket'}")


def test_a_folder_is_the_storage_itself_and_ray_keeps_each_run_under_its_ray_folder(tmp_path):
    storage = Storage.parse(str(tmp_path / "shared"))
    assert storage.root == tmp_path / "shared" and storage.uri is None and storage.given
    assert storage.ray_storage(tmp_path / "shared" / "search-1") == (str(tmp_path / "shared" / "search-1" / "ray"), None)
    assert storage.push(tmp_path) == 0 and storage.pull(tmp_path) == 0
    default = Storage.parse(None)
    assert str(default.root) == "results" and not default.given


def test_run_folders_and_files_are_names_under_a_given_storage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    default, given = Storage.parse(None), Storage.parse("shared")
    assert default.run_path("results/s", default.root / "x").as_posix() == "results/s"  # as before: the working folder
    assert given.run_path("s", given.root / "x").as_posix() == "shared/s"
    assert given.run_path(None, given.root / "x").as_posix() == "shared/x"
    (tmp_path / "here.json").write_text("{}")
    assert given.file_path("here.json").as_posix() == "here.json"  # a file that exists is read where it is
    assert given.file_path("best.json").as_posix() == "shared/best.json"


def test_push_copies_what_changed_and_pull_brings_it_to_another_machine(uri_storage, tmp_path, monkeypatch):
    run = uri_storage.root / "search-1"
    (run / "ray").mkdir(parents=True)
    (run / "config.json").write_text('{"a": 1}')
    (run / "ray" / "state.json").write_text("Ray writes its own storage")
    (run / ".config.json.123.tmp").write_text("half a file")
    assert uri_storage.push(run) == 1
    bucket = tmp_path / "bucket" / "search-1"
    assert sorted(p.name for p in bucket.iterdir()) == ["config.json"]  # no ray/, no temp file, no .part left
    assert uri_storage.push(run) == 0  # nothing changed
    (run / "suggestions.jsonl").write_text("{}\n")
    assert uri_storage.push(run) == 1

    monkeypatch.setenv("MIXERNAS_CACHE", str(tmp_path / "machine-b"))
    elsewhere = Storage.parse(uri_storage.uri)
    assert elsewhere.root != uri_storage.root and elsewhere.root.name == uri_storage.root.name
    here = elsewhere.here(run)  # the path machine A recorded, in machine B's mirror
    assert here == elsewhere.root / "search-1"
    assert elsewhere.pull(here) == 2
    assert (here / "config.json").read_text() == '{"a": 1}' and not (here / "ray").exists()
    assert elsewhere.localize(run / "config.json") == here / "config.json"
    assert elsewhere.latest_run("search-*", "config.json") == here
    assert elsewhere.file_path("search-1/suggestions.jsonl").read_text() == "{}\n"


def test_a_storage_unpickled_in_another_process_mirrors_into_that_machines_cache(uri_storage, tmp_path, monkeypatch):
    monkeypatch.setenv("MIXERNAS_CACHE", str(tmp_path / "node-2"))
    copy = pickle.loads(pickle.dumps(uri_storage))
    assert copy.uri == uri_storage.uri and copy.root == mirror_root(uri_storage.uri)
    assert copy.root.is_relative_to(tmp_path / "node-2")
    path, filesystem = copy.ray_storage(copy.root / "supernet" / "x")
    assert path == str(tmp_path / "bucket" / "supernet" / "x" / "ray") and filesystem is not None


def test_an_absolute_run_folder_under_a_uri_storage_is_refused(uri_storage):
    with pytest.raises(UserError, match="a run folder is a name under it"):
        uri_storage.run_path("/tmp/elsewhere", uri_storage.root)


@pytest.mark.parametrize("value, message", [
    ("nosuch://bucket/x", "--storage nosuch://bucket/x: Unrecognized filesystem type in URI"),
    ("", "--storage '': expected a folder or a URI"),
])
def test_a_storage_that_cannot_be_opened_is_one_line(value, message):
    with pytest.raises(UserError) as error:
        Storage.parse(value)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.slow
def test_an_s3_endpoint_where_nothing_answers_is_one_line(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")  # no credential lookup on the network
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    from benchmarks.ray_cluster import free_ports

    port, = free_ports(1)
    uri = f"s3://bucket/runs?endpoint_override=127.0.0.1:{port}&scheme=http"
    with pytest.raises(UserError) as error:
        Storage.parse(uri)
    assert str(error.value).startswith(f"--storage {uri}: cannot write there (") and "\n" not in str(error.value)


def test_a_file_uri_folder_that_cannot_be_made_is_refused(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(UserError, match="cannot write there"):
        Storage.parse(f"file://{tmp_path / 'a-file' / 'below'}")
    assert os.listdir(tmp_path) == ["a-file"]

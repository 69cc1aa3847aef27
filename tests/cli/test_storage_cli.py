"""``--storage PATH|URI`` through launch.py (issue #44, item 1): every command keeps its runs, and Ray its state,
there; a driver on another machine (here: another working folder and mirror cache) carries on from what the URI
holds; a storage that cannot be used exits 2 with one line before any work."""
from __future__ import annotations

import csv
import io
import json
import shlex

import pytest

from tests.helpers import BUDGET, SUPERNET_FLAGS, TINY_SPACE, StoredRuns, run_launch

pytestmark = pytest.mark.slow  # every test here runs launch.py with training or Ray

COMMANDS = [["supernet", "--epochs", "1"], ["search", "--budget", "4.5GFLOPs"],
            ["retrain", "--arch", "arch.json", "--epochs", "1"], ["check-ranking", "--archs", "2"]]


def machine(tmp_path, name: str) -> tuple:
    """A working folder and a mirror cache of their own: what a driver on another machine has."""
    work = tmp_path / name
    work.mkdir()
    (work / "space.json").write_text(json.dumps(TINY_SPACE))
    return work, {"MIXERNAS_CACHE": str(work / "cache")}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_storage_that_cannot_be_used_exits_2_in_one_line_before_any_work(tmp_path, command):
    (tmp_path / "a-file").write_text("")
    (tmp_path / "arch.json").write_text(json.dumps(TINY_SPACE))  # never read: the storage is checked first
    for storage, message in [("nosuch://bucket/runs", "error: --storage nosuch://bucket/runs: Unrecognized "
                                                      "filesystem type in URI: nosuch://bucket/runs"),
                             ("a-file/runs", "error: --storage a-file/runs: cannot write there (Not a directory)")]:
        done = run_launch(*command, "--storage", storage, cwd=tmp_path, timeout=120)
        assert done.returncode == 2, done.stderr[-3000:]
        assert done.stderr.strip().splitlines() == [message]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "arch.json"]


def test_runs_kept_at_a_uri_are_retrained_and_checked_from_another_machine(tmp_path, storage_uri):
    uri = storage_uri
    first, env = machine(tmp_path, "first")
    trained = run_launch("supernet", "--space", "space.json", *SUPERNET_FLAGS, "--storage", uri, cwd=first, env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    searched = run_launch("search", "--space", "space.json", "--budget", BUDGET, *SUPERNET_FLAGS, "--trials", "3",
                          "--finetune-steps", "4", "--train-all-paths", "--search-dir", "s", "--storage", uri, cwd=first,
                          env=env)
    assert searched.returncode == 0, searched.stderr[-3000:]
    assert "no supernet checkpoint for these settings" not in searched.stdout  # found at the URI by its settings
    assert f"retrain --storage {shlex.quote(uri)} --arch best.json" in searched.stdout
    stored = StoredRuns(uri)
    assert not (first / "results").exists()  # nothing beside the storage
    trials = list(csv.DictReader(io.StringIO(stored.read_text("s/trials.csv"))))
    assert sum(r["state"] == "completed" for r in trials) == 3
    assert {"best.json", "s", "supernet", "latency"} <= {f.split("/")[0] for f in stored.files()}
    assert stored.glob("s/ray/tune/*/result.json")  # Ray Tune's state is at the URI itself

    second, env = machine(tmp_path, "second")
    retrained = run_launch("retrain", "--storage", uri, "--arch", "best.json", "--epochs", "1", "--batch-size", "50",
                           cwd=second, env=env)
    assert retrained.returncode == 0, retrained.stderr[-3000:]
    metrics = json.loads(stored.read_text("s/retrain/metrics.json"))  # beside its search, at the URI
    assert metrics["name"] == json.loads(stored.read_text("best.json"))["name"]
    assert "s/retrain/model.pt" in stored.files()

    third, env = machine(tmp_path, "third")
    checked = run_launch("check-ranking", "--storage", uri, "--archs", "2", "--seeds", "1", "--epochs", "1",
                         "--batch-size", "50", "--budget", BUDGET, cwd=third, env=env)
    assert checked.returncode == 0, checked.stderr[-3000:]
    ranking = stored.glob("supernet/*/ranking/ranking.json")
    assert len(ranking) == 1 and json.loads(stored.read_text(ranking[0]))["num_archs"] == 2
    assert len(stored.glob("supernet/*/ranking/standalone/*/*/model.pt")) == 2  # each run pushed from its trial

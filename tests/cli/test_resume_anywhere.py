"""A search driver killed with kill -9 resumes from whatever its storage holds (issue #50 item 2), for a file://
URI and a live S3 endpoint: no finished trial lost, none evaluated twice.

Ray copies Tune's state to the storage file by file, after the save and in the background, so a driver killed at
some moment leaves one of these at the storage; each case builds it from states the storage really held during
the run (captured as they came), then resumes on "another machine" (another working folder and mirror cache):

- as the kill left it, with 3 finished trials saved;
- a trial ended after the last save that reached the storage (its result is there, no saved state knows it);
- killed between a save and its copy, the copy torn: Tune's trial table from an older save beside the newest
  searcher state (the state a resume once failed on with a Ray RuntimeError).
"""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from nas.search.tune_state import BUNDLE
from tests.helpers import BUDGET, ROOT, SUPERNET_FLAGS, TINY_SPACE, StoredRuns, run_launch, running_cluster

pytestmark = pytest.mark.slow  # every test here runs launch.py with training and Ray

TRIALS = 8
TUNE = "s/ray/tune"
TUNE_STATE = ("experiment_state-", "search_gen_state-", "searcher-state-")


@pytest.fixture(scope="module")
def cluster():
    yield from running_cluster(num_cpus=2)


@pytest.fixture(scope="module")
def supernet(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("supernet")
    (work / "space.json").write_text(json.dumps(TINY_SPACE))
    done = run_launch("supernet", "--space", "space.json", *SUPERNET_FLAGS, "--run-dir", "net", cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    return work / "net" / "supernet.pt"


def machine(tmp_path: Path, name: str) -> tuple[Path, dict]:
    work = tmp_path / name
    work.mkdir()
    (work / "space.json").write_text(json.dumps(TINY_SPACE))
    return work, {**os.environ, "MIXERNAS_CACHE": str(work / "cache")}


def finished_in(experiment_state: bytes) -> dict[str, dict]:
    """Trial id -> last result of each finished trial of a saved trial table."""
    finished = {}
    for meta, runtime in json.loads(experiment_state)["trial_data"]:
        meta, runtime = json.loads(meta), json.loads(runtime)
        if meta["status"] == "TERMINATED":
            finished[meta["trial_id"]] = runtime["last_result"]
    return finished


def bundled_table(bundle: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        return archive.read(next(n for n in archive.namelist() if n.startswith("experiment_state-")))


class StateRecorder(threading.Thread):
    """Reads the storage's saved states as the driver writes them: every distinct bundle, and every distinct set of
    Tune's own state files."""

    def __init__(self, stored: StoredRuns) -> None:
        super().__init__(daemon=True)
        self.stored, self.stop = stored, threading.Event()
        self.bundles: list[bytes] = []
        self.tune_files: list[dict[str, bytes]] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                if f"s/{BUNDLE}" in self.stored.listing("s"):
                    bundle = self.stored.read_bytes(f"s/{BUNDLE}")
                    finished_in(bundled_table(bundle))  # S3 reads size then bytes: a replaced file reads torn
                    if not self.bundles or bundle != self.bundles[-1]:
                        self.bundles.append(bundle)
                tune = {f: self.stored.read_bytes(f) for f in self.stored.listing(TUNE)
                        if f.split("/")[-1].startswith(TUNE_STATE)}
                if tune and json_complete(tune) and (not self.tune_files or tune != self.tune_files[-1]):
                    self.tune_files.append(tune)
            except (OSError, ValueError, StopIteration, zipfile.BadZipFile):  # replaced as it was read: read again
                pass
            time.sleep(0.05)

    def saved_finished(self) -> int:
        return len(finished_in(bundled_table(self.bundles[-1]))) if self.bundles else 0

    def bundle_before(self, finished: int) -> bytes:
        """The last bundle that held at least one finished trial but fewer than ``finished``."""
        return [b for b in self.bundles if 1 <= len(finished_in(bundled_table(b))) < finished][-1]

    def tune_files_before(self, finished: int) -> dict[str, bytes]:
        """The last of Tune's own saved states (as copied) that held fewer than ``finished`` finished trials."""
        return [t for t in self.tune_files if len(finished_in(table_of(t))) < finished][-1]


def table_of(tune_files: dict[str, bytes]) -> bytes:
    return next(v for k, v in tune_files.items() if k.split("/")[-1].startswith("experiment_state-"))


def json_complete(tune_files: dict[str, bytes]) -> bool:
    try:
        finished_in(table_of(tune_files))
        return True
    except (StopIteration, ValueError):
        return False


def evaluation_records_once_the_trials_are_gone(stored: StoredRuns) -> dict[str, dict]:
    """Arch -> its evaluation record at the storage, once no new one came for 3 s (the killed driver's trials may
    finish an evaluation before Ray stops them)."""
    records, quiet_since, deadline = set(), time.monotonic(), time.monotonic() + 60
    while time.monotonic() - quiet_since < 3 and time.monotonic() < deadline:
        now = set(stored.glob("s/evaluations/*"))
        if now != records:
            records, quiet_since = now, time.monotonic()
        time.sleep(0.2)
    return {f.split("/")[-1][:-len(".json")]: json.loads(stored.read_text(f)) for f in records}


def printed(lines: list[str]) -> dict[str, str]:
    """Arch -> the line each finished trial printed."""
    return {line.split("]", 1)[1].split()[0]: line for line in lines if line.startswith("[") and " top1 " in line}


def search(uri: str, supernet: Path, cluster, *extra: str) -> list[str]:
    return [sys.executable, "-u", str(ROOT / "launch.py"), "search", "--space", "space.json", "--budget", BUDGET,
            "--supernet", str(supernet), "--search-dir", "s", "--trials", str(TRIALS), "--sampler", "random",
            "--finetune-steps", "8", "--max-concurrent", "2", "--address", cluster.address, "--storage", uri, *extra]


@pytest.mark.parametrize("left", ["as killed", "a trial ended after the last stored save", "a torn copy"])
def test_a_driver_killed_with_kill_9_resumes_from_what_the_storage_holds(tmp_path, storage_uri, supernet, cluster,
                                                                         left):
    stored = StoredRuns(storage_uri)
    first, env = machine(tmp_path, "first")
    recorder = StateRecorder(stored)
    recorder.start()
    try:
        proc = subprocess.Popen(search(storage_uri, supernet, cluster), cwd=first, env=env, stdout=subprocess.PIPE,
                                stderr=(first / "search.stderr").open("w"), text=True)
        lines: list[str] = []
        for line in proc.stdout:  # 3 trials printed, then until the storage holds a save with them
            lines.append(line)
            if len(printed(lines)) == 3:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and recorder.saved_finished() < 3:
                    time.sleep(0.05)
                proc.send_signal(signal.SIGKILL)  # no handler runs, nothing is flushed: as when the machine dies
                break
        proc.wait(timeout=60)
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL, "".join(lines) + (first / "search.stderr").read_text()[-3000:]
        records = evaluation_records_once_the_trials_are_gone(stored)
    finally:
        recorder.stop.set()
        recorder.join()

    newest = len(finished_in(bundled_table(recorder.bundles[-1])))
    if left == "a trial ended after the last stored save":
        older = recorder.bundle_before(len(records))
        stored.write_bytes(f"s/{BUNDLE}", older)
        for name, data in recorder.tune_files_before(len(finished_in(bundled_table(older))) + 1).items():
            stored.write_bytes(name, data)
    elif left == "a torn copy":
        older = recorder.tune_files_before(newest)
        table = next(k for k in older if k.split("/")[-1].startswith("experiment_state-"))
        stored.write_bytes(table, older[table])  # the newest searcher files stay: a copy cut off between files
    kept = finished_in(bundled_table(stored.read_bytes(f"s/{BUNDLE}")))  # what the next driver starts from
    assert newest >= 3 and len(records) >= len(kept)
    if left == "a trial ended after the last stored save":
        assert set(records) - {r["arch"] for r in kept.values()}  # results that no stored state knows

    second, env = machine(tmp_path, "second")
    resumed = subprocess.run([sys.executable, "-u", str(ROOT / "launch.py"), "search", "--resume", "--search-dir", "s",
                              "--address", cluster.address, "--storage", storage_uri],
                             cwd=second, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]

    trials = [r for r in csv.DictReader(io.StringIO(stored.read_text("s/trials.csv"))) if r["state"] == "completed"]
    assert len(trials) == TRIALS and len({r["arch"] for r in trials}) == TRIALS
    assert len({r["trial"] for r in trials}) == TRIALS
    by_id, by_arch = {r["trial"]: r for r in trials}, {r["arch"]: r for r in trials}
    for trial_id, result in kept.items():  # finished in the state resumed from: kept under its trial id
        assert by_id[trial_id]["arch"] == result["arch"] and float(by_id[trial_id]["top1"]) == result["top1"]
    for arch, record in records.items():  # evaluated before the kill: kept, its score unchanged
        assert float(by_arch[arch]["top1"]) == record["top1"]
    again = printed(resumed.stdout.splitlines())
    assert not set(again) & {r["arch"] for r in kept.values()}  # finished in the saved state: not run again
    for arch, line in again.items():  # printed by the second driver: evaluated now, or kept from its record
        if "(kept: evaluated before the driver restarted)" not in line:
            assert arch not in records, line  # a result the storage held was not evaluated again
    # (a record written by a trial of the killed driver as Ray stopped it may be kept too: evaluated once all the same)
    assert len(list(stored.glob("s/evaluations/*"))) == TRIALS  # one evaluation per arch, in all
    suggested = [json.loads(line) for line in stored.read_text("s/suggestions.jsonl").splitlines()]
    assert sorted(line["trial"] for line in suggested if line["state"] == "suggested") == sorted(by_id)

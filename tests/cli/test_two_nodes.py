"""A Ray cluster of two nodes on this machine survives what clusters suffer (issue #44, items 2-3): a head and a
second node (``ray start --address`` with its own ports, one CPU each and a custom resource), trials on both, the
second node lost mid-search, a DDP worker killed mid-epoch, the driver killed with kill -9 and resumed from the
storage by a driver elsewhere. Every process these tests start is gone after them."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks.ray_cluster import FAST_NODE_DEATH, command_lines
from nas.runs import checkpoint as ckpt
from tests.helpers import BUDGET, ROOT, SUPERNET_FLAGS, TINY_SPACE, run_launch, running_cluster

pytestmark = pytest.mark.slow  # every test here runs launch.py with training or Ray

SECOND = {"second": 1}  # the second node's custom resource


@pytest.fixture(scope="module")
def cluster():
    """A head of 1 CPU; each test adds the second node it needs (``second_node``)."""
    yield from running_cluster(num_cpus=1, env=FAST_NODE_DEATH)


@pytest.fixture
def second_node(cluster):
    node = cluster.add_node(num_cpus=1, resources=SECOND)
    yield node
    node.stop()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The tiny space and its supernet, trained here (the supernet search looks for by its settings)."""
    work = tmp_path_factory.mktemp("two-nodes")
    (work / "space.json").write_text(json.dumps(TINY_SPACE))
    done = run_launch("supernet", "--space", "space.json", *SUPERNET_FLAGS, cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    return work


def node_id(node) -> str:
    """The Ray node id of ``node`` (its raylet's --node_id)."""
    raylet = [args for args in command_lines(node.processes()).values() if "--node_id=" in args]
    return raylet[0].split("--node_id=", 1)[1].split()[0]


def search_args(search_dir: str, trials: int, *extra: str) -> list[str]:
    return ["search", "--space", "space.json", "--budget", BUDGET, *SUPERNET_FLAGS, "--train-all-paths",
            "--search-dir", search_dir, "--trials", str(trials), "--sampler", "random", "--finetune-steps", "16",
            "--max-concurrent", "2", *extra]


def launch(*args: str, cwd: Path, env: dict | None = None, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-u", str(ROOT / "launch.py"), *args], cwd=cwd,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=out.open("w"),
                            text=True)


def completed(path: Path) -> list[dict]:
    return [r for r in csv.DictReader(path.open()) if r["state"] == "completed"]


def stored_finished_trials(tune_dir: Path) -> dict[str, dict]:
    """Trial id -> last result of every finished trial in the newest Tune state saved under ``tune_dir``."""
    states = sorted(tune_dir.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return {}
    try:
        trial_data = json.loads(states[-1].read_text())["trial_data"]
    except (json.JSONDecodeError, KeyError):  # caught mid-write
        return {}
    finished = {}
    for meta, runtime in trial_data:
        meta, runtime = json.loads(meta), json.loads(runtime)
        if meta["status"] == "TERMINATED":
            finished[meta["trial_id"]] = runtime["last_result"]
    return finished


def printed_results(lines: list[str]) -> dict[str, str]:
    """Arch -> top-1 (as printed, 4 decimals) of each finished trial's progress line."""
    return {line.split()[2]: line.split()[4] for line in lines if line.startswith("[") and " top1 " in line}


def test_a_search_that_loses_its_second_node_completes_every_trial_once(cluster, second_node, work):
    lost = node_id(second_node)
    proc = launch(*search_args("results/lost-node", 8), "--address", cluster.address, cwd=work,
                  out=work / "lost-node.stderr")
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if sum(l.startswith("[") for l in lines) == 2:  # two trials done: one of the two running is on the node
            second_node.kill()
    out = "".join(lines)
    assert proc.wait(timeout=300) == 0, out + (work / "lost-node.stderr").read_text()[-3000:]
    trials = completed(work / "results" / "lost-node" / "trials.csv")
    assert len(trials) == 8 and len({r["trial"] for r in trials}) == 8 and len({r["arch"] for r in trials}) == 8
    nodes = [r["node"] for r in trials]
    assert lost in nodes and len(set(nodes)) == 2, nodes  # trials ran on both nodes
    assert "running it again, retry 1" in out  # the trial the node took with it ran again on the head
    retried = [p.parent.name for p in (work / "results" / "lost-node" / "ray" / "tune").glob("*/error.txt")]
    assert retried and all(any(r["trial"] in name for r in trials) for name in retried)


def test_a_two_worker_supernet_across_the_nodes_whose_worker_dies_ends_as_an_uninterrupted_run(cluster, second_node,
                                                                                                 work):
    # one CPU a node, one CPU a worker: rank 0 and rank 1 are on different nodes
    args = ["supernet", "--space", "space.json", "--epochs", "3", "--batch-size", "50", "--train-subset", "2000",
            "--recalib-batches", "2", "--warmup-epochs", "0", "--num-workers", "2", "--address", cluster.address]
    straight = run_launch(*args, "--run-dir", "ddp-straight", cwd=work)
    assert straight.returncode == 0, straight.stderr[-3000:]
    proc = launch(*args, "--run-dir", "ddp-killed", cwd=work, out=work / "ddp-killed.stderr")
    metrics, killed = work / "ddp-killed" / "metrics.csv", None
    while proc.poll() is None:
        if killed is None and metrics.exists() and len(metrics.read_text().splitlines()) >= 2:  # epoch 1 is saved
            workers = [pid for pid, args in command_lines(second_node.processes()).items() if "RayTrainWorker" in args]
            assert workers, command_lines(second_node.processes())
            os.kill(workers[0], signal.SIGKILL)
            killed = workers[0]
        time.sleep(0.1)
    err = (work / "ddp-killed.stderr").read_text()
    assert proc.returncode == 0 and killed, err[-3000:]
    assert "resumed from" in err and "after epoch 1" in err  # Ray Train started the group again from epoch 1
    assert [line.split(",")[0] for line in metrics.read_text().splitlines()[1:]] == ["1", "2", "3"]
    a, b = (ckpt.load(work / run / "supernet.pt") for run in ("ddp-straight", "ddp-killed"))
    for name, weight in a["model"].items():
        torch.testing.assert_close(b["model"][name], weight, rtol=1e-4, atol=1e-5, msg=name)


def test_a_driver_killed_with_kill_9_is_resumed_from_the_storage_by_another_driver(cluster, second_node, tmp_path):
    uri = f"file://{tmp_path / 'bucket'}"
    first, second = tmp_path / "first", tmp_path / "second"
    for work in (first, second):
        work.mkdir()
        (work / "space.json").write_text(json.dumps(TINY_SPACE))
    env_a, env_b = ({"MIXERNAS_CACHE": str(work / "cache")} for work in (first, second))
    trained = run_launch("supernet", "--space", "space.json", *SUPERNET_FLAGS, "--storage", uri, cwd=first, env=env_a)
    assert trained.returncode == 0, trained.stderr[-3000:]
    proc = launch(*search_args("s", 8), "--address", cluster.address, "--storage", uri, cwd=first, env=env_a,
                  out=first / "search.stderr")
    lines, stored = [], {}
    for line in proc.stdout:
        lines.append(line)
        if sum(l.startswith("[") for l in lines) == 3:
            # Ray copies Tune's state to the URI in the background: the claim is about what reached the storage,
            # so wait until its saved state holds these 3 trials (a driver killed before that resumes from an
            # older state; seen once under load: a state older than the searcher's, and the resume failed)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(stored) < 3:
                time.sleep(0.2)
                stored = stored_finished_trials(tmp_path / "bucket" / "s" / "ray" / "tune")
            proc.send_signal(signal.SIGKILL)  # no handler runs, nothing is flushed: as when the machine dies
            break
    proc.wait(timeout=60)
    proc.stdout.close()
    stored = stored_finished_trials(tmp_path / "bucket" / "s" / "ray" / "tune")  # what the next driver reads
    before = printed_results(lines)
    assert len(before) == 3 and len(stored) >= 3, "".join(lines)

    resumed = run_launch("search", "--resume", "--search-dir", "s", "--address", cluster.address, "--storage", uri,
                         cwd=second, env=env_b)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    trials = completed(tmp_path / "bucket" / "s" / "trials.csv")
    assert len(trials) == 8 and len({r["trial"] for r in trials}) == 8 and len({r["arch"] for r in trials}) == 8
    # Kept, not run again: a search restarted from scratch with the same seed would find the same archs, but under
    # new trial ids, and would print them again.
    by_id = {r["trial"]: r for r in trials}
    for trial_id, result in stored.items():
        assert trial_id in by_id and by_id[trial_id]["arch"] == result["arch"]
        assert float(by_id[trial_id]["top1"]) == result["top1"]
    by_arch = {r["arch"]: r for r in trials}
    assert all(f"{float(by_arch[arch]['top1']):.4f}" == top1 for arch, top1 in before.items())
    again = printed_results(resumed.stdout.splitlines())
    assert not set(again) & {result["arch"] for result in stored.values()}
    assert len(again) == 8 - len(stored)
    assert not (second / "results").exists() and not (first / "results").exists()

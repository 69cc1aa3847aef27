"""``--address``: a real Ray cluster (``ray start --head`` on 127.0.0.1 with its own ports) runs the supernet job
and the search; an address where no cluster answers exits 2 (issue #10, item 5)."""
from __future__ import annotations

import json

import pytest

from benchmarks.ray_cluster import free_ports
from tests.helpers import BUDGET, SUPERNET_FLAGS, TINY_SPACE, run_launch, running_cluster

pytestmark = pytest.mark.slow  # every test here runs launch.py with training or Ray


@pytest.fixture(scope="module")
def cluster():
    """A running one-node cluster (2 CPUs) for this module's tests."""
    yield from running_cluster()


def test_supernet_and_search_run_on_the_cluster_at_address(cluster, tmp_path):
    address, dashboard = cluster.address, cluster.dashboard
    (tmp_path / "space.json").write_text(json.dumps(TINY_SPACE))
    trained = run_launch("supernet", "--space", "space.json", *SUPERNET_FLAGS, "--run-dir", "sn",
                         "--address", address, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert f":{dashboard}" in trained.stderr  # the cluster's dashboard, not a local Ray's
    assert (tmp_path / "sn" / "supernet.pt").is_file()
    assert list((tmp_path / "sn" / "ray").iterdir())  # Ray Train ran it (its storage), not this process alone

    searched = run_launch("search", "--space", "space.json", "--budget", BUDGET, "--supernet", "sn/supernet.pt",
                          "--trials", "3", "--search-dir", "results/s", "--address", address, cwd=tmp_path)
    assert searched.returncode == 0, searched.stderr[-3000:]
    assert f":{dashboard}" in searched.stderr
    best = json.loads((tmp_path / "results" / "s" / "best.json").read_text())
    assert best["stages"] and "Traceback" not in searched.stderr


def test_without_an_address_a_command_starts_its_own_ray_beside_a_running_cluster(cluster, tmp_path):
    # regression: ray.init() without an address joins the cluster the last `ray start` on this machine left
    # running (found under RAY_TMPDIR/ray, /tmp/ray by default). A command given no address had run there, on
    # that cluster's CPUs and dashboard, where the README promises a local Ray.
    (tmp_path / "space.json").write_text(json.dumps(TINY_SPACE))
    gcs_port = cluster.address.rsplit(":", 1)[1]  # the file names the machine's IP, the head's port
    assert (cluster.temp / "ray_current_cluster").read_text().strip().endswith(f":{gcs_port}")
    env = {"RAY_TMPDIR": str(cluster.system_temp)}
    trained = run_launch("supernet", "--space", "space.json", *SUPERNET_FLAGS, "--run-dir", "sn", cwd=tmp_path,
                         env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    searched = run_launch("search", "--space", "space.json", "--budget", BUDGET, "--supernet", "sn/supernet.pt",
                          "--trials", "1", "--finetune-steps", "0", "--score", "top1", "--search-dir", "results/s",
                          cwd=tmp_path, env=env)
    assert searched.returncode == 0, searched.stderr[-3000:]
    dashboard = [line for line in searched.stderr.splitlines() if line.startswith("Ray dashboard: ")]
    assert len(dashboard) == 1 and "http://127.0.0.1:" in dashboard[0], searched.stderr[-3000:]
    assert f":{cluster.dashboard}" not in dashboard[0]  # its own Ray's dashboard, not the cluster's
    sessions = [p for p in cluster.temp.glob("session_*") if p.is_dir() and not p.is_symlink()]
    assert len(sessions) == 2, sessions  # the cluster's, and the one the search started


@pytest.mark.parametrize("command", [["supernet", "--epochs", "1"], ["search", "--budget", "4.5GFLOPs"],
                                     ["retrain", "--arch", "arch.json", "--epochs", "1"],
                                     ["check-ranking", "--archs", "2"]])
def test_an_address_where_no_cluster_answers_exits_2(tmp_path, command):
    port, = free_ports(1)
    (tmp_path / "arch.json").write_text(json.dumps(TINY_SPACE))  # never read: the address is checked first
    done = run_launch(*command, "--address", f"127.0.0.1:{port}", cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [
        f"error: --address 127.0.0.1:{port}: no Ray cluster answers there (Connection refused); start one with "
        f"`ray start --head` or leave --address out for a local Ray"]
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.pt"))


def test_a_ray_address_where_no_cluster_answers_exits_2_naming_it(tmp_path):
    port, = free_ports(1)
    done = run_launch("search", "--budget", "4.5GFLOPs", cwd=tmp_path, timeout=120,
                      env={"RAY_ADDRESS": f"127.0.0.1:{port}"})
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [
        f"error: RAY_ADDRESS 127.0.0.1:{port}: no Ray cluster answers there (Connection refused); start one with "
        f"`ray start --head` or leave RAY_ADDRESS out for a local Ray"]
    assert not (tmp_path / "results").exists()

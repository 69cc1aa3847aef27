"""``--address``: a real Ray cluster (``ray start --head`` on 127.0.0.1 with its own ports) runs the supernet job
and the search; an address where no cluster answers exits 2 (issue #10, item 5)."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.cli.test_search_cli import BUDGET, SUPERNET_FLAGS
from tests.conftest import run_launch
from tests.nas.test_supernet_train import TINY_SPACE


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="module")
def cluster():
    """A one-node Ray cluster of 2 CPUs, apart from any other Ray on this machine (own ports, own temp folder:
    a short path, for Ray's unix sockets). Yields (address, dashboard port)."""
    ray_bin = shutil.which("ray")
    if ray_bin is None:
        pytest.skip("the `ray` command is not on PATH")
    gcs, dashboard, client, agent, agent_grpc, runtime_env, metrics, node_manager, object_manager = _free_ports(9)
    temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    log = open(Path(temp) / "start.log", "w")
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
         "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "true", "--dashboard-port", str(dashboard),
         "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
         "--dashboard-agent-grpc-port", str(agent_grpc), "--runtime-env-agent-port", str(runtime_env),
         "--metrics-export-port", str(metrics), "--node-manager-port", str(node_manager),
         "--object-manager-port", str(object_manager), "--temp-dir", temp],
        stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while "block forever" not in (Path(temp) / "start.log").read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not come up:\n{(Path(temp) / 'start.log').read_text()[-3000:]}")
            time.sleep(1)
        yield f"127.0.0.1:{gcs}", dashboard
    finally:
        head.terminate()  # --block: stopping it stops every process of this cluster, and only those
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_supernet_and_search_run_on_the_cluster_at_address(cluster, tmp_path):
    address, dashboard = cluster
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


@pytest.mark.parametrize("command", [["supernet", "--epochs", "1"], ["search", "--budget", "4.5GFLOPs"],
                                     ["retrain", "--arch", "arch.json", "--epochs", "1"],
                                     ["check-ranking", "--archs", "2"]])
def test_an_address_where_no_cluster_answers_exits_2(tmp_path, command):
    port, = _free_ports(1)
    (tmp_path / "arch.json").write_text(json.dumps(TINY_SPACE))  # never read: the address is checked first
    done = run_launch(*command, "--address", f"127.0.0.1:{port}", cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [
        f"error: --address 127.0.0.1:{port}: no Ray cluster answers there (Connection refused); start one with "
        f"`ray start --head` or leave --address out for a local Ray"]
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.pt"))

"""``--address``: a real Ray cluster (``ray start --head`` on 127.0.0.1 with its own ports) runs the supernet job
and the search; an address where no cluster answers exits 2 (issue #10, item 5)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.cli.test_search_cli import BUDGET, SUPERNET_FLAGS
from tests.conftest import run_launch
from tests.nas.train.test_supernet import TINY_SPACE

# On SIGTERM a `ray start --block` head first drains its node and waits up to 30 s for it to go idle, which it
# never does here: Ray Train leaves a detached actor (Ray Data's _AutoscalingCoordinatorActor) holding a worker.
# Without the drain the head stops in about 2 s instead of 31 s (benchmarks/cluster_teardown.py).
NO_DRAIN_ON_SIGTERM = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class RayHead:
    """A one-node Ray cluster of 2 CPUs (``ray start --head --block``), apart from any other Ray on this machine: own
    ports, own temp folder (a short path, for Ray's unix sockets). Stopping the head stops every process of this
    cluster, and only those.

    The temp folder is ``<system_temp>/ray``, as Ray's own under /tmp: with RAY_TMPDIR=<system_temp> a process sees
    this machine as one where ``ray start --head`` was the last Ray started (``ray.init()`` would join it)."""

    def __init__(self, ray_bin: str, *, drain_on_sigterm: bool = False):
        gcs, self.dashboard, client, agent, agent_grpc, runtime_env, metrics, node_manager, object_manager = \
            _free_ports(9)
        self.address = f"127.0.0.1:{gcs}"
        self.system_temp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
        self.temp = self.system_temp / "ray"
        self.temp.mkdir()
        self._log = open(self.temp / "start.log", "w")
        self.process = subprocess.Popen(
            [ray_bin, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
             "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "true",
             "--dashboard-port", str(self.dashboard), "--ray-client-server-port", str(client),
             "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
             "--runtime-env-agent-port", str(runtime_env), "--metrics-export-port", str(metrics),
             "--node-manager-port", str(node_manager), "--object-manager-port", str(object_manager),
             "--temp-dir", str(self.temp)],
            stdout=self._log, stderr=subprocess.STDOUT, text=True,
            env=os.environ if drain_on_sigterm else {**os.environ, **NO_DRAIN_ON_SIGTERM})

    def wait_until_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while "block forever" not in (self.temp / "start.log").read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start --head did not come up:\n{(self.temp / 'start.log').read_text()[-3000:]}")
            time.sleep(1)

    def stop(self) -> tuple[float, int, list[int]]:
        """SIGTERM to the head (SIGKILL after 60 s). Returns the seconds until it exited, how many processes it had
        started, and those still alive 2 s later (a process it killed may take a moment to go)."""
        started = _descendants(self.process.pid, _live_processes())
        start = time.perf_counter()
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        seconds = time.perf_counter() - start
        self._log.close()
        shutil.rmtree(self.system_temp, ignore_errors=True)
        time.sleep(2)
        return seconds, len(started), sorted(started & _live_processes().keys())


def _live_processes() -> dict[int, int]:
    """Parent pid of every process on this machine that has not exited (zombies left out), by pid."""
    table = subprocess.run(["ps", "-eo", "pid=,ppid=,stat="], capture_output=True, text=True, check=True).stdout
    return {int(pid): int(parent) for pid, parent, stat in (line.split()[:3] for line in table.splitlines())
            if not stat.startswith("Z")}


def _descendants(pid: int, processes: dict[int, int]) -> set[int]:
    """Every process below ``pid``, following the parent links of ``processes``."""
    children: dict[int, list[int]] = {}
    for child, parent in processes.items():
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@pytest.fixture(scope="module")
def cluster():
    """A running RayHead for this module's tests."""
    ray_bin = shutil.which("ray")
    if ray_bin is None:
        pytest.skip("the `ray` command is not on PATH")
    head = RayHead(ray_bin)
    try:
        try:
            head.wait_until_up()
        except RuntimeError as e:
            pytest.fail(str(e))
        yield head
    finally:
        _, started, left = head.stop()
    assert started > 0 and not left, f"{len(left)} of the {started} processes of the cluster outlived its head: {left}"


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
                          "--trials", "1", "--finetune-steps", "0", "--search-dir", "results/s", cwd=tmp_path,
                          env=env)
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
    port, = _free_ports(1)
    (tmp_path / "arch.json").write_text(json.dumps(TINY_SPACE))  # never read: the address is checked first
    done = run_launch(*command, "--address", f"127.0.0.1:{port}", cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [
        f"error: --address 127.0.0.1:{port}: no Ray cluster answers there (Connection refused); start one with "
        f"`ray start --head` or leave --address out for a local Ray"]
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.pt"))


def test_a_ray_address_where_no_cluster_answers_exits_2_naming_it(tmp_path):
    port, = _free_ports(1)
    done = run_launch("search", "--budget", "4.5GFLOPs", cwd=tmp_path, timeout=120,
                      env={"RAY_ADDRESS": f"127.0.0.1:{port}"})
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [
        f"error: RAY_ADDRESS 127.0.0.1:{port}: no Ray cluster answers there (Connection refused); start one with "
        f"`ray start --head` or leave RAY_ADDRESS out for a local Ray"]
    assert not (tmp_path / "results").exists()

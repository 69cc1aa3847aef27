"""Real Ray clusters on this machine for the benchmarks and tests: a head (``ray start --head --block`` on
127.0.0.1 with its own ports and temp folder) and extra nodes that join it (``ray start --address``), each with its
own ports, CPUs and a custom resource. Stopping the head stops every process of its cluster, and only those; a node
can be killed alone, as when a machine is lost."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# On SIGTERM a `ray start --block` head first drains its node and waits up to 30 s for it to go idle, which it
# never does here: Ray Train leaves a detached actor (Ray Data's _AutoscalingCoordinatorActor) holding a worker.
# Without the drain the head stops in about 2 s instead of 31 s (benchmarks/cluster_teardown.py).
NO_DRAIN_ON_SIGTERM = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
# How soon the head declares a silent node dead: Ray's default (every 3 s, 5 misses) costs a lost node's trials
# about 15 s more; the tests that lose a node ask for 1 s x 3.
FAST_NODE_DEATH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
                   "RAY_health_check_timeout_ms": "1000"}


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class _RayProcess:
    """A ``ray start ... --block`` process and its log."""

    name = "ray start"

    def _start(self, ray_bin: str, args: list[str], log: Path, env: dict) -> None:
        self.log_path = log
        self._log = open(log, "w")
        self.process = subprocess.Popen([ray_bin, "start", "--block", *args], stdout=self._log,
                                        stderr=subprocess.STDOUT, text=True, env={**os.environ, **env})

    def wait_until_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while "block forever" not in self.log_path.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not come up:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.5)

    def processes(self) -> set[int]:
        """This node's processes: the ``ray start`` process and everything below it."""
        return {self.process.pid} | descendants(self.process.pid, live_processes())


class RayHead(_RayProcess):
    """A Ray cluster's head of ``num_cpus`` CPUs (``ray start --head --block``), apart from any other Ray on this
    machine: own ports, own temp folder (a short path, for Ray's unix sockets). Stopping the head stops every
    process of this cluster, and only those.

    The temp folder is ``<system_temp>/ray``, as Ray's own under /tmp: with RAY_TMPDIR=<system_temp> a process sees
    this machine as one where ``ray start --head`` was the last Ray started (``ray.init()`` would join it)."""

    name = "ray start --head"

    def __init__(self, ray_bin: str, *, num_cpus: int = 2, drain_on_sigterm: bool = False, env: dict | None = None):
        gcs, self.dashboard, client, agent, agent_grpc, runtime_env, metrics, node_manager, object_manager = \
            free_ports(9)
        self.ray_bin = ray_bin
        self.address = f"127.0.0.1:{gcs}"
        self.system_temp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
        self.temp = self.system_temp / "ray"
        self.temp.mkdir()
        self.nodes: list[RayNode] = []
        self._start(ray_bin, [
            "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
            "--num-cpus", str(num_cpus), "--num-gpus", "0", "--include-dashboard", "true",
            "--dashboard-port", str(self.dashboard), "--ray-client-server-port", str(client),
            "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
            "--runtime-env-agent-port", str(runtime_env), "--metrics-export-port", str(metrics),
            "--node-manager-port", str(node_manager), "--object-manager-port", str(object_manager),
            "--temp-dir", str(self.temp)],
            self.temp / "start.log", {**({} if drain_on_sigterm else NO_DRAIN_ON_SIGTERM), **(env or {})})

    def add_node(self, *, num_cpus: int = 1, resources: dict | None = None, env: dict | None = None) -> "RayNode":
        """Start a node that joins this head (it is up when this returns)."""
        node = RayNode(self, num_cpus=num_cpus, resources=resources or {}, env=env or {})
        self.nodes.append(node)
        node.wait_until_up()
        return node

    def stop(self) -> tuple[float, int, list[int]]:
        """SIGTERM to the head (SIGKILL after 60 s), after its other nodes. Returns the seconds until it exited, how
        many processes the cluster had started, and those still alive 2 s later (a process it killed may take a
        moment to go)."""
        started = set()
        for node in self.nodes:
            started |= node.processes()
            node.stop()
        started |= descendants(self.process.pid, live_processes())
        start = time.perf_counter()
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        seconds = time.perf_counter() - start
        self._log.close()
        time.sleep(2)
        left = sorted(started & live_processes().keys())
        shutil.rmtree(self.system_temp, ignore_errors=True)
        return seconds, len(started), left


class RayNode(_RayProcess):
    """A second node of a RayHead's cluster on this machine (``ray start --address``): its own ports, CPUs and
    custom resources. ``kill()`` takes it away as a lost machine goes: every process of it at once, no goodbye."""

    name = "ray start --address"

    def __init__(self, head: RayHead, *, num_cpus: int, resources: dict, env: dict):
        agent, agent_grpc, runtime_env, metrics, node_manager, object_manager = free_ports(6)
        self.log_path = head.temp / f"node-{node_manager}.log"
        self._start(head.ray_bin, [
            "--address", head.address, "--node-ip-address", "127.0.0.1", "--num-cpus", str(num_cpus),
            "--num-gpus", "0", "--resources", json.dumps(resources),
            "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
            "--runtime-env-agent-port", str(runtime_env), "--metrics-export-port", str(metrics),
            "--node-manager-port", str(node_manager), "--object-manager-port", str(object_manager)],
            # the head turned token authentication on (Ray 2.60's default): a node joins with the same token
            self.log_path, {**NO_DRAIN_ON_SIGTERM, "RAY_AUTH_MODE": "token", **env})

    def kill(self) -> None:
        """SIGKILL to every process of this node at once."""
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def ray_executable() -> str:
    """The `ray` command of the running Python's environment (beside its interpreter, so a virtual environment
    need not be activated), else the one on PATH."""
    beside = Path(sys.executable).with_name("ray")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("ray")
    if found is None:
        raise RuntimeError(f"no `ray` command beside {sys.executable} or on PATH: install ray[default] into this "
                           f"environment")
    return found


def live_processes() -> dict[int, int]:
    """Parent pid of every process on this machine that has not exited (zombies left out), by pid."""
    table = subprocess.run(["ps", "-eo", "pid=,ppid=,stat="], capture_output=True, text=True, check=True).stdout
    return {int(pid): int(parent) for pid, parent, stat in (line.split()[:3] for line in table.splitlines())
            if not stat.startswith("Z")}


def descendants(pid: int, processes: dict[int, int]) -> set[int]:
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


def command_lines(pids: set[int]) -> dict[int, str]:
    """The whole command line of each of ``pids`` still alive (Ray names its workers' processes ray::<Actor>)."""
    found = {}
    for pid in pids:
        try:
            found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:  # gone meanwhile
            pass
    return found

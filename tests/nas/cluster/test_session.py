"""Ray session set-up: quiet worker shutdown (issue #11, item 8) and cluster addresses (issue #10, item 5)."""
from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import pytest

from nas.cluster.session import check_cluster_address, cluster_address, ensure_ray
from nas.errors import UserError

# A weakref callback that raises SystemExit: what Ray's SIGTERM handler does when it stops an idle worker
# while the garbage collector runs one (the "Exception ignored in: <function WeakSet...>" lines a search
# printed). A ValueError raised the same way is a real error and must still be printed.
_UNRAISABLE = textwrap.dedent("""
    import sys, weakref
    if sys.argv[1] == "hook":
        from nas.cluster.session import setup_worker_process
        setup_worker_process()
    class Obj: pass
    def raise_in_callback(error):
        def callback(ref):
            raise error
        obj = Obj()
        ref = weakref.ref(obj, callback)
        del obj
    raise_in_callback(SystemExit(1))
    raise_in_callback(ValueError("a real error"))
    print("still running")
""")


def _run_unraisable(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _UNRAISABLE, mode], capture_output=True, text=True, timeout=120)


def test_worker_hook_silences_only_the_exit_raised_in_a_gc_callback():
    without = _run_unraisable("plain")
    assert "SystemExit" in without.stderr  # what users saw before the hook
    hooked = _run_unraisable("hook")
    assert hooked.returncode == 0 and "still running" in hooked.stdout
    assert "SystemExit" not in hooked.stderr
    assert "ValueError: a real error" in hooked.stderr


@pytest.mark.slow
def test_ray_workers_run_the_setup_hook():
    import ray

    ensure_ray(announce=False)

    @ray.remote(num_cpus=0)
    def hook_name() -> str:
        return f"{sys.unraisablehook.__module__}.{sys.unraisablehook.__qualname__}"

    assert ray.get(hook_name.remote()) == "nas.cluster.session._unraisable_hook"


@pytest.mark.slow
def test_a_local_ray_never_takes_a_job_meant_for_a_cluster():
    ensure_ray(announce=False)  # this process runs a local Ray (as a search's earlier step may have started)
    with pytest.raises(UserError, match="already runs Ray \\(a local one\\)"):
        ensure_ray("127.0.0.1:6379", announce=False)
    assert ensure_ray(announce=False) is not None  # no address: the running Ray is the one to use


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # released on close: nothing listens there


@pytest.mark.parametrize("address, message", [
    ("localhost", "expected HOST:PORT"),
    ("ray://:10001", "expected HOST:PORT"),
    ("127.0.0.1:{port}", "no Ray cluster answers there"),
    ("ray://127.0.0.1:{port}", "no Ray cluster answers there"),
])
def test_an_address_where_no_cluster_answers_is_refused_at_once(address, message):
    address = address.format(port=_closed_port())
    with pytest.raises(UserError, match=message) as err:
        check_cluster_address(address, timeout_s=2)
    assert address in str(err.value)


def test_an_address_that_listens_passes_the_check():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_cluster_address(f"127.0.0.1:{server.getsockname()[1]}")


def test_a_cluster_is_named_by_the_flag_else_by_ray_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cluster_address(None) is None  # a local Ray: never the cluster a `ray start` left running
    assert cluster_address("10.0.0.5:6379") == "10.0.0.5:6379"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.6:6379")  # as `ray job submit` sets it
    assert cluster_address(None) == "10.0.0.6:6379"
    assert cluster_address("10.0.0.5:6379") == "10.0.0.5:6379"  # the flag wins
    for local in ("", "local"):
        monkeypatch.setenv("RAY_ADDRESS", local)
        assert cluster_address(None) is None


def test_a_refused_address_names_what_set_it(monkeypatch):
    address = f"127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(UserError, match=f"^RAY_ADDRESS {address}: no Ray cluster answers there .* leave RAY_ADDRESS "
                                        f"out for a local Ray$"):
        check_cluster_address(address, timeout_s=2)
    monkeypatch.delenv("RAY_ADDRESS")
    with pytest.raises(UserError, match=f"^--address {address}: "):
        check_cluster_address(address, timeout_s=2)


def test_a_request_bigger_than_the_local_ray_is_refused():
    import ray

    from nas.cluster.session import check_fits_local_ray

    ensure_ray(announce=False)
    cpus = ray.cluster_resources()["CPU"]
    check_fits_local_ray(cpus=cpus, gpus=0)  # as much as it holds: fine
    with pytest.raises(UserError, match=f"^--cpus-per-trial asks for {cpus + 1:g} CPUs, and this machine's Ray has "
                                        f"{cpus:g}: nothing could ever start$"):
        check_fits_local_ray(cpus=cpus + 1, gpus=0)
    gpus = ray.cluster_resources().get("GPU", 0)
    with pytest.raises(UserError, match="^--gpu asks for"):
        check_fits_local_ray(cpus=0, gpus=gpus + 1, gpus_flag="--gpu")

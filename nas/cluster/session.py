"""Start (or join) Ray with its dashboard, token authentication left on, and tell the user how to open it."""
from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RaySession:
    dashboard_url: str | None
    token: str | None

    def describe(self) -> str:
        if not self.dashboard_url:
            return "Ray dashboard: not running"
        url = self.dashboard_url if self.dashboard_url.startswith("http") else f"http://{self.dashboard_url}"
        if not self.token:
            return f"Ray dashboard: {url}"
        return (f"Ray dashboard: {url}  (token authentication is on: open it and paste the token printed by "
                f"`ray get-auth-token`; for the HTTP API send the header 'Authorization: Bearer <token>')")


def auth_token() -> str | None:
    """The cluster's token, if token authentication is on (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    return path.read_text().strip() if path.is_file() else None


def free_port(preferred: int, host: str = "127.0.0.1") -> int:
    """``preferred`` if nothing listens there, else a free port the system picks."""
    with socket.socket() as probe:
        try:
            probe.bind((host, preferred))
            return preferred
        except OSError:
            pass
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def setup_worker_process() -> None:
    """Ray runs this in every worker process of our jobs before any trial code (``worker_process_setup_hook``).

    Ray stops an idle worker with SIGTERM, and its handler raises SystemExit wherever the worker's main thread
    is. When that is inside a garbage-collector callback, Python cannot raise it and prints "Exception ignored
    in: <function WeakSet...> ... SystemExit: 1" instead, which Ray forwards to the user's terminal mid-search.
    Such an exit is Ray's shutdown, not an error of ours: it is not printed. Every other unraisable exception
    still is. Standard library only: every worker pays this import.
    """
    sys.unraisablehook = _unraisable_hook


def _unraisable_hook(unraisable) -> None:
    if isinstance(unraisable.exc_value, SystemExit):
        return
    sys.__unraisablehook__(unraisable)


RUNTIME_ENV = {"worker_process_setup_hook": f"{__name__}.setup_worker_process"}


def cluster_address(flag: str | None) -> str | None:
    """The cluster a command runs on: ``--address``, else Ray's own RAY_ADDRESS (``ray job submit`` sets it for the
    command it runs), else None: a local Ray.

    Only these two name a cluster. Ray's ``ray.init()`` without an address would also join whatever cluster the
    last ``ray start`` on this machine left running; ``ensure_ray(None)`` never does (``address="local"``). Called
    by the command line only: inside a Ray worker RAY_ADDRESS names the cluster the worker already belongs to."""
    env = os.environ.get("RAY_ADDRESS", "")
    return flag or (env if env and env != "local" else None)


def address_source(address: str) -> str:
    """What the user set to ask for ``address``, for messages: RAY_ADDRESS or --address."""
    return "RAY_ADDRESS" if address == os.environ.get("RAY_ADDRESS") else "--address"


def check_cluster_address(address: str, timeout_s: float = 5.0) -> None:
    """Raise UserError when nothing answers at a cluster ``address`` (HOST:PORT or ray://HOST:PORT).

    ray.init retries an address where no cluster runs for minutes, printing a warning every few seconds;
    a wrong address must be one clear line, never a silent local Ray. "auto" is left to ray.init, which
    fails at once when this machine runs no cluster."""
    from nas.errors import UserError

    if address == "auto":
        return
    source = address_source(address)
    host_port = address.split("://", 1)[-1]
    host, sep, port = host_port.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise UserError(f"{source} {address}: expected HOST:PORT of a Ray cluster's head (e.g. 10.0.0.5:6379), "
                        f"ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise UserError(f"{source} {address}: no Ray cluster answers there ({e.strerror or e}); start one with "
                        f"`ray start --head` or leave {source} out for a local Ray") from None


def prepare_cluster_connection(address: str) -> None:
    """Check ``address`` and keep token authentication on for it; call before Ray is imported.

    Ray turns token authentication on by itself only for a cluster it finds without an address; a cluster
    named by address (started with `ray start --head`, Ray 2.60) wants the token all the same, and Ray reads
    RAY_AUTH_MODE once, when it is imported."""
    check_cluster_address(address)
    if "RAY_AUTH_MODE" not in os.environ and auth_token():
        os.environ["RAY_AUTH_MODE"] = "token"


def ensure_ray(address: str | None = None, *, num_cpus: int | None = None, dashboard_port: int = 8265,
               announce: bool = True) -> RaySession:
    """Connect to the cluster at ``address``, or start a local Ray with its dashboard on 127.0.0.1.

    A Ray already initialised in this process is kept; when ``address`` names a cluster, it must be that one
    (a local Ray started earlier must not take a job meant for the cluster)."""
    import ray

    from nas.errors import UserError

    if ray.is_initialized() and address and _SESSION[1] != address:
        source = address_source(address)
        raise UserError(f"{source} {address}: this process already runs Ray "
                        f"({_SESSION[1] or 'a local one'}); give every step the same {source}")
    if not ray.is_initialized():
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
        if address:
            prepare_cluster_connection(address)  # done already by launch.py; here for callers of the library
            try:
                context = ray.init(address=address, logging_level="WARNING", runtime_env=RUNTIME_ENV)
            except ConnectionError as e:
                hint = "" if auth_token() else (" (if the cluster uses token authentication, put the token that "
                                                "`ray get-auth-token` prints on its head into ~/.ray/auth_token "
                                                "or RAY_AUTH_TOKEN)")
                raise UserError(f"{address_source(address)} {address}: {str(e).splitlines()[0]}{hint}") from None
        else:
            port = free_port(dashboard_port)
            if port != dashboard_port and announce:
                print(f"port {dashboard_port} is busy (another Ray?): the dashboard goes on port {port}",
                      file=sys.stderr, flush=True)
            # "local": a Ray of our own, even where `ray start` left a cluster running (see cluster_address)
            context = ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1",
                               dashboard_port=port, num_cpus=num_cpus, configure_logging=True, logging_level="WARNING",
                               log_to_driver=True, runtime_env=RUNTIME_ENV)
        session = RaySession(getattr(context, "dashboard_url", None) or None, auth_token())
        if announce:
            print(session.describe(), file=sys.stderr, flush=True)
        _SESSION[:] = [session, address]
    return _SESSION[0] or RaySession(None, auth_token())


def check_fits_local_ray(*, cpus: float, gpus: float, cpus_flag: str = "--cpus-per-trial",
                         gpus_flag: str = "--gpus-per-trial") -> None:
    """Raise UserError when one trial (or worker group) asks for more CPUs or GPUs than the local Ray holds: Ray
    would keep it pending forever. Not for a cluster, which may grow (an autoscaler adds nodes)."""
    import ray

    from nas.errors import UserError

    have = ray.cluster_resources()
    for flag, kind, want in ((cpus_flag, "CPU", cpus), (gpus_flag, "GPU", gpus)):
        if want > have.get(kind, 0):
            raise UserError(f"{flag} asks for {want:g} {kind}s, and this machine's Ray has {have.get(kind, 0):g}: "
                            f"nothing could ever start")


_SESSION: list = [None, None]  # the session this process started or joined, and the address it joined



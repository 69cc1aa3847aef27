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


def ensure_ray(address: str | None = None, *, num_cpus: int | None = None, dashboard_port: int = 8265,
               announce: bool = True) -> RaySession:
    """Connect to the cluster at ``address``, or start a local Ray with its dashboard on 127.0.0.1."""
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
        port = free_port(dashboard_port)
        if port != dashboard_port and announce and not address:
            print(f"port {dashboard_port} is busy (another Ray?): the dashboard goes on port {port}",
                  file=sys.stderr, flush=True)
        kwargs = dict(include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port,
                      num_cpus=num_cpus, configure_logging=True, logging_level="WARNING", log_to_driver=True)
        if address:
            context = ray.init(address=address, logging_level="WARNING")
        else:
            context = ray.init(**kwargs)
        session = RaySession(getattr(context, "dashboard_url", None) or None, auth_token())
        if announce:
            print(session.describe(), file=sys.stderr, flush=True)
        _SESSION[0] = session
    return _SESSION[0] or RaySession(None, auth_token())


_SESSION: list[RaySession | None] = [None]


def save_tune_state_between_syncs() -> None:
    """Make Ray Tune wait for its previous copy of the experiment folder before it writes the next state.

    Tune saves the experiment state (trial table, searcher state, each through temp files) into its driver staging
    folder and then copies that folder to the run folder in a background thread without waiting; the next save
    can start while the last copy runs. A temp file renamed mid-copy printed a FileNotFoundError traceback, and a
    state file rewritten mid-copy can reach the run folder half-written, which a resume would read (issue #11).
    We save after every trial event (TUNE_GLOBAL_CHECKPOINT_S=0), so the overlap was frequent. Ray is pinned to
    2.60.*; ``tests/nas/test_search.py`` checks the method this wraps still exists.
    """
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    original = _ExperimentCheckpointManager.sync_up_experiment_state
    if getattr(original, "_waits_for_last_sync", False):
        return

    def sync_up_experiment_state(self, save_fn, force: bool = False, wait: bool = False):
        def save_after_last_sync() -> None:
            try:
                self._storage.syncer.wait()
            except Exception:  # a failed copy is retried by the sync after this save; Tune logs it
                pass
            save_fn()

        return original(self, save_after_last_sync, force=force, wait=wait)

    sync_up_experiment_state._waits_for_last_sync = True
    _ExperimentCheckpointManager.sync_up_experiment_state = sync_up_experiment_state

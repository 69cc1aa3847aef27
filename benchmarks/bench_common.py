"""What every benchmark script shares: running launch.py, its outputs (summary JSON + rows CSV) and its exit on bad
input. Benchmarks run from the checkout's root as modules: ``python -m benchmarks.<name>``."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from nas.errors import USER_ERRORS, UserError
from nas.runs.files import write_csv_atomic
from searchspace import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]  # the checkout: launch.py and the packages

# The tiny setting of the benchmarks of the machinery (clusters, teardown) and of the tests: with the built-in tiny
# space (``--space tiny``), a supernet of one epoch on 1,000 digits (about 20 s on one core), and a budget that some
# of its archs are over (they span about 1.36 to 1.9 GFLOPs).
TINY_SUPERNET_FLAGS = ["--epochs", "1", "--batch-size", "50", "--train-subset", "1000", "--recalib-batches", "2",
                       "--warmup-epochs", "0"]
TINY_BUDGET = "1.6GFLOPs"


def run_launch(*args: str, cwd: Path | None = None, timeout: float = 1800, env: dict | None = None
               ) -> subprocess.CompletedProcess:
    """Run ``python launch.py ARGS`` of this checkout as a user would and capture its output.

    The timeout only guards against a hang: on a machine busy with another job these commands run several times
    slower than alone (the longest test's, about 4 minutes alone on 2 cores, ran past 600 s there)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], cwd=cwd or ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def write_rows(out_dir: str | Path, stem: str, summary: dict, rows: list[dict]) -> Path:
    """``<out_dir>/<stem>.json`` ({summary, rows}) and ``<stem>.csv`` (the rows), both atomic, and a line naming them;
    returns the stem path."""
    path = Path(out_dir) / stem
    write_json_atomic(path.with_name(f"{stem}.json"), {"summary": summary, "rows": rows})
    write_csv_atomic(path.with_name(f"{stem}.csv"), rows)
    print(f"outputs: {path}.json, {path}.csv", flush=True)
    return path


def reference_checkout(path: str, this: Path) -> dict[str, Path]:
    """``{"this": this, "reference": path}`` for a side-by-side benchmark; a folder without launch.py is a user error."""
    reference = Path(path).resolve()
    if not (reference / "launch.py").exists():
        raise UserError(f"{reference}: no launch.py (expected a checkout of the reference commit)")
    return {"this": this, "reference": reference}


def checkout_order(round_index: int) -> tuple[str, str]:
    """Which checkout runs first in a round: alternating, so neither always meets the warmer (or busier) machine."""
    return ("this", "reference") if round_index % 2 == 0 else ("reference", "this")


def run(main: Callable[[], int]) -> None:
    """Exit with ``main()``'s code; bad input (a user error) is one line and exit code 2, as in launch.py."""
    try:
        sys.exit(main())
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

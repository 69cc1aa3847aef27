"""What a process pays to import the modules of a command or of a Ray worker: this checkout against a reference
checkout, side by side.

Every ``launch.py`` command that trains, and every Ray Tune trial process (a search trial, a stand-alone run),
imports these modules before it does any work. Each round imports each module in a fresh interpreter of each
checkout (the checkout first on ``sys.path``, the order alternating between rounds) and keeps the wall time;
reported per module: the median of each and their ratio (reference / this).

    git worktree add /tmp/ref <commit>          # the reference, e.g. the commit before a change
    python -m benchmarks.import_time --reference /tmp/ref --rounds 5
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.bench_common import ROOT, checkout_order, reference_checkout, run, write_rows
from nas.errors import UserError

MODULES = {
    "nas.search.trial": "a search trial's process (the driver too)",
    "nas.ranking.check": "search and check-ranking drivers (the supernet's last check)",
    "nas.train.parallel": "a stand-alone run's process (check-ranking, retrain --top-k)",
}


def time_import(checkout: Path, module: str) -> float:
    code = f"import sys; sys.path.insert(0, {str(checkout)!r}); import {module}; assert {module}.__file__.startswith({str(checkout)!r})"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=checkout, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise UserError(f"{checkout}: import {module} failed: {done.stderr.strip().splitlines()[-1:]}")
    return seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", required=True, help="a checkout of the reference commit")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    args = p.parse_args()
    checkouts = reference_checkout(args.reference, ROOT)
    if args.rounds < 1:
        raise UserError("--rounds must be at least 1")
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for module in MODULES:
            for name in checkout_order(r):
                times.setdefault((module, name), []).append(time_import(checkouts[name], module))
    rows = []
    for module, who in MODULES.items():
        this, ref = statistics.median(times[module, "this"]), statistics.median(times[module, "reference"])
        rows.append({"module": module, "imported_by": who, "this_s": round(this, 2), "reference_s": round(ref, 2),
                     "ratio": round(ref / this, 2)})
        print(f"import {module:<18} this {this:5.2f}s  reference {ref:5.2f}s  {ref / this:4.2f}x   ({who})")
    write_rows(args.out, "import_time", {"rounds": args.rounds, "reference": str(checkouts["reference"])}, rows)
    return 0


if __name__ == "__main__":
    run(main)

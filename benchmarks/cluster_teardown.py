"""How long the test suite's Ray cluster (tests/cli/test_cluster_cli.py) takes to stop after a Ray Train job, with
Ray's drain on SIGTERM (the reference: how the fixture stopped it before) and without it (this fixture), side by
side.

Each round starts a head both ways (the order alternating between rounds), runs the tiny ``launch.py supernet`` of
the cluster test on it (Ray Train, which leaves a detached actor behind), sends SIGTERM and times until the head
exits; then checks that no process the head had started is still alive. Reported: the median of each and their
ratio (with drain / without).

    python -m benchmarks.cluster_teardown --rounds 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from benchmarks.bench_common import TINY_SUPERNET_FLAGS, checkout_order, run, run_launch, write_rows
from benchmarks.ray_cluster import RayHead, ray_executable
from nas.errors import UserError

DRAIN = {"this": False, "reference": True}  # the reference fixture left Ray's drain on SIGTERM as it is


def one_teardown(ray_bin: str, drain_on_sigterm: bool) -> dict:
    head = RayHead(ray_bin, drain_on_sigterm=drain_on_sigterm)
    try:
        head.wait_until_up()
        with tempfile.TemporaryDirectory(dir="/tmp") as work:
            trained = run_launch("supernet", "--space", "tiny", *TINY_SUPERNET_FLAGS, "--run-dir", "sn",
                                 "--address", head.address, cwd=Path(work))
            if trained.returncode != 0:
                raise RuntimeError(f"launch.py supernet failed on the cluster:\n{trained.stderr[-3000:]}")
    except BaseException:
        head.stop()
        raise
    seconds, started, left = head.stop()
    return {"seconds": round(seconds, 2), "processes": started, "left_alive": len(left)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="results/benchmarks")
    args = parser.parse_args()
    if args.rounds < 1:
        raise UserError(f"--rounds {args.rounds}: must be at least 1")
    ray_bin = ray_executable()
    rows = []
    for round_index in range(args.rounds):
        for which in checkout_order(round_index):
            row = {"round": round_index, "fixture": which, "drain_on_sigterm": DRAIN[which],
                   **one_teardown(ray_bin, DRAIN[which])}
            rows.append(row)
            print(json.dumps(row), flush=True)
    median = {which: statistics.median(r["seconds"] for r in rows if r["fixture"] == which) for which in DRAIN}
    summary = {"median_s_without_drain": median["this"], "median_s_with_drain": median["reference"],
               "ratio": round(median["reference"] / median["this"], 2),
               "processes_left_alive": sum(r["left_alive"] for r in rows), "rounds": args.rounds}
    print(json.dumps(summary))
    write_rows(args.out, "cluster_teardown", summary, rows)
    return 0


if __name__ == "__main__":
    run(main)

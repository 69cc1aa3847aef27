"""Search throughput on a Ray cluster of one node against two (the same machine), and what losing the second
node mid-search costs, side by side in one run (issue #44, item 5).

The clusters are real (``benchmarks/ray_cluster.py``): a head of 1 CPU, and for "two nodes" a second node of 1 CPU
that joins it with ``ray start --address``; Ray's health-check settings are its defaults, as a user gets them.
Every search is the same command (the tiny space of the tests, its supernet trained once here, ``--trials N``,
``--max-concurrent 2``, the default fine-tuning and sampler, seed 0) run through ``launch.py --address``; the
order of the one-node and two-node searches alternates between rounds. Per search: trials/min over the search's
own wall time (what it prints: "search finished in Xs: N completed"). The node-loss search kills every process of
the second node when the second trial has finished and reports when the lost trial finished after the kill, how
long its new attempt itself ran, and their difference: what losing the node cost it (detection, rescheduling, a new
process); and the search's wall time.

    python -m benchmarks.two_nodes --rounds 2 --trials 12
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_common import ROOT, TINY_BUDGET, TINY_SUPERNET_FLAGS, checkout_order, run, run_launch, write_rows
from benchmarks.ray_cluster import RayHead, ray_executable
from nas.errors import UserError

FINISHED = re.compile(r"search finished in (\d+)s: (\d+) completed")
ORDER = {"this": "two nodes", "reference": "one node"}  # checkout_order's names -> the two settings compared


def one_search(ray_bin: str, work: Path, setting: str, trials: int, run_name: str) -> dict:
    head = RayHead(ray_bin, num_cpus=1)
    try:
        head.wait_until_up()
        node = head.add_node(num_cpus=1, resources={"second": 1}) if setting != "one node" else None
        args = [sys.executable, "-u", str(ROOT / "launch.py"), "search", "--space", "tiny", "--budget", TINY_BUDGET,
                *TINY_SUPERNET_FLAGS, "--train-all-paths", "--trials", str(trials), "--max-concurrent", "2",
                "--search-dir", f"results/{run_name}", "--address", head.address]
        start = time.perf_counter()
        proc = subprocess.Popen(args, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        done, killed_at, lost_trial, finished_at, out = 0, None, None, {}, []
        for line in proc.stdout:
            out.append(line)
            if line.startswith("[") and "running it again" in line and lost_trial is None and killed_at:
                lost_trial = line.split(" trial ", 1)[1].split()[0]
            elif line.startswith("[") and "failed" not in line:
                done += 1
                finished_at[line.split()[2]] = time.perf_counter()  # by arch
                if setting == "node lost" and done == 2:
                    node.kill()
                    killed_at = time.perf_counter()
        if proc.wait() != 0:
            raise RuntimeError(f"the {setting} search failed:\n{''.join(out)[-3000:]}")
        wall = time.perf_counter() - start
    finally:
        head.stop()
    match = FINISHED.search("".join(out))
    seconds, completed = int(match.group(1)), int(match.group(2))
    row = {"setting": setting, "completed": completed, "search_s": seconds, "command_s": round(wall, 1),
           "trials_per_min": round(60 * completed / max(seconds, 1), 2)}
    if setting == "node lost":
        row.update(lost_trial_timing(work / "results" / run_name, lost_trial, finished_at, killed_at))
    return row


def lost_trial_timing(search_dir: Path, trial_id: str | None, finished_at: dict[str, float], killed_at: float) -> dict:
    """When the trial lost with the node finished, after the kill, and how long its new attempt itself ran (Tune's
    time_this_iter_s of its one report): their difference is what losing the node cost that trial (detection,
    rescheduling, a new process)."""
    if trial_id is None:
        return {"lost_trial_done_after_kill_s": None, "lost_trial_attempt_s": None, "lost_trial_restart_s": None}
    rows = {r["trial"]: r for r in csv.DictReader((search_dir / "trials.csv").open())}
    done_after = finished_at[rows[trial_id]["arch"]] - killed_at
    result = next((search_dir / "ray" / "tune").glob(f"*{trial_id}*/result.json"))
    attempt = json.loads(result.read_text().splitlines()[-1])["time_this_iter_s"]
    return {"lost_trial_done_after_kill_s": round(done_after, 2), "lost_trial_attempt_s": round(attempt, 2),
            "lost_trial_restart_s": round(done_after - attempt, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--out", default="results/benchmarks")
    args = parser.parse_args()
    if args.rounds < 1 or args.trials < 4:
        raise UserError("--rounds must be at least 1 and --trials at least 4")
    ray_bin = ray_executable()
    rows = []
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        work = Path(tmp)
        trained = run_launch("supernet", "--space", "tiny", *TINY_SUPERNET_FLAGS, cwd=work)
        if trained.returncode != 0:
            raise RuntimeError(trained.stderr[-3000:])
        for round_index in range(args.rounds):
            for which in checkout_order(round_index):
                row = {"round": round_index, **one_search(ray_bin, work, ORDER[which], args.trials,
                                                          f"{round_index}-{which}")}
                rows.append(row)
                print(json.dumps(row), flush=True)
            row = {"round": round_index, **one_search(ray_bin, work, "node lost", args.trials, f"{round_index}-lost")}
            rows.append(row)
            print(json.dumps(row), flush=True)

    def median(setting: str, key: str) -> float:
        return statistics.median(r[key] for r in rows if r["setting"] == setting and r[key] is not None)

    summary = {"trials": args.trials, "rounds": args.rounds,
               "trials_per_min_one_node": median("one node", "trials_per_min"),
               "trials_per_min_two_nodes": median("two nodes", "trials_per_min"),
               "trials_per_min_node_lost": median("node lost", "trials_per_min"),
               "lost_trial_restart_s": median("node lost", "lost_trial_restart_s"),
               "lost_trial_done_after_kill_s": median("node lost", "lost_trial_done_after_kill_s"),
               "all_trials_completed": all(r["completed"] == args.trials for r in rows)}
    summary["ratio_two_over_one"] = round(summary["trials_per_min_two_nodes"] / summary["trials_per_min_one_node"], 2)
    print(json.dumps(summary))
    write_rows(args.out, "two_nodes", summary, rows)
    return 0


if __name__ == "__main__":
    run(main)

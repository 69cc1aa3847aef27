"""Does a change leave the default search as it was? The same command in two checkouts, trial by trial.

Runs ``launch.py search`` (the default search unless flags follow ``--``) in this checkout and in a reference
checkout (``git worktree add /tmp/ref <commit>``), each in a results folder of its own, and compares their
trials.csv: the arch, state and top-1 of every trial and rejection, in suggestion order. Both searches read one
latency table (measured latencies differ from run to run; the table's predictions are what the sampler sees): the
reference builds it, or ``--latency-table FILE`` gives it, and it is copied into the other results folder first.
Each side trains its own supernet, so a change to supernet training shows too.

    git worktree add /tmp/ref <commit>
    python -m benchmarks.same_trials --reference /tmp/ref [--out-dir results/benchmarks/same-trials] [-- FLAGS]

Exit code 0 when every trial matches, 1 otherwise; ``same_trials.json``/``.csv`` list both sides' trials.
``--reference-results DIR`` reuses a results folder the reference already wrote (its search-*/ and latency/).
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.bench_common import ROOT, reference_checkout, run, write_rows
from nas.errors import UserError

COMPARED = ("arch", "state", "top1")


def search(checkout: Path, results: Path, flags: list[str]) -> tuple[Path, float]:
    """Run the search in ``checkout`` writing under ``results``; returns its search folder and wall time."""
    results.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # results/ is relative to the working folder: a folder per side, the checkout's code on the path
    done = subprocess.run([sys.executable, str(checkout / "launch.py"), "search", *flags], cwd=results.parent,
                          env={**os.environ, "PYTHONPATH": str(checkout)}, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (results.parent / "search.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise UserError(f"search in {checkout} exited {done.returncode}: see {results.parent / 'search.log'}")
    return newest_search(results), wall


def newest_search(results: Path) -> Path:
    runs = sorted(results.glob("search-*/trials.csv"))
    if not runs:
        raise UserError(f"{results}: no search-*/trials.csv")
    return runs[-1].parent


def read_trials(search_dir: Path) -> list[dict]:
    with open(search_dir / "trials.csv") as f:
        return list(csv.DictReader(f))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="a checkout of the reference commit")
    parser.add_argument("--reference-results", default=None, metavar="DIR",
                        help="a results folder the reference's search already wrote (skips its run)")
    parser.add_argument("--latency-table", default=None, metavar="FILE", help="the table both searches read")
    parser.add_argument("--out-dir", default="results/benchmarks/same-trials")
    parser.add_argument("flags", nargs="*", help="search flags after --, default: --budget 4.5GFLOPs")
    args = parser.parse_args()
    flags = args.flags or ["--budget", "4.5GFLOPs"]
    sides = reference_checkout(args.reference, ROOT)
    out = Path(args.out_dir).resolve()
    work = {name: out / name / "results" for name in sides}
    walls = {}
    if args.reference_results:
        shutil.copytree(Path(args.reference_results) / "latency", work["reference"] / "latency", dirs_exist_ok=True)
        ref_dir, walls["reference"] = newest_search(Path(args.reference_results)), None
    else:
        if args.latency_table:
            (work["reference"] / "latency").mkdir(parents=True, exist_ok=True)
            shutil.copy2(args.latency_table, work["reference"] / "latency")
        ref_dir, walls["reference"] = search(sides["reference"], work["reference"], flags)
    # the reference's table, so both sides' samplers see the same latencies
    shutil.copytree(work["reference"] / "latency", work["this"] / "latency", dirs_exist_ok=True)
    this_dir, walls["this"] = search(sides["this"], work["this"], flags)

    ref, this = read_trials(ref_dir), read_trials(this_dir)
    rows, same = [], len(ref) == len(this)
    for i in range(max(len(ref), len(this))):
        a, b = (ref[i] if i < len(ref) else {}), (this[i] if i < len(this) else {})
        match = all(a.get(k) == b.get(k) for k in COMPARED)
        same &= match
        rows.append({"n": i + 1, **{f"reference_{k}": a.get(k) for k in COMPARED},
                     **{f"this_{k}": b.get(k) for k in COMPARED}, "same": match})
    summary = {"same": same, "trials": {"reference": len(ref), "this": len(this)},
               "matching": sum(r["same"] for r in rows), "compared": list(COMPARED), "flags": flags,
               "reference": str(sides["reference"]), "reference_search": str(ref_dir), "this_search": str(this_dir),
               "wall_s": walls}
    write_rows(out, "same_trials", summary, rows)
    print(f"{summary['matching']}/{len(rows)} trials the same (arch, state, top-1) in suggestion order: "
          f"{'SAME' if same else 'DIFFERENT'}; reference {ref_dir}, this {this_dir}")
    for r in rows:
        if not r["same"]:
            print(f"  #{r['n']}: reference {r['reference_arch']} {r['reference_top1']} vs this {r['this_arch']} "
                  f"{r['this_top1']}")
    return 0 if same else 1


if __name__ == "__main__":
    run(main)

"""How long ``launch.py`` takes to refuse a bad flag: this checkout against a reference checkout, side by side.

Each round runs every bad command line once in each checkout (its own ``launch.py``, a fresh interpreter, the
order alternating between rounds) and keeps the wall time; reported per command line: the median of each and
their ratio (reference / this). Every run must exit 2 with one line on stderr, in both checkouts.

    git worktree add /tmp/ref <commit>          # the reference, e.g. the commit before a change
    python -m benchmarks.cli_refusal --reference /tmp/ref --rounds 5
    python -m benchmarks.cli_refusal --reference /tmp/ref --rounds 5 --supernet results/supernet/<run>/supernet.pt

With ``--supernet FILE``, three more: flags refused by what a supernet recorded (its data settings, its space's
cheapest arch), which the commands read from the file.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_common import ROOT, checkout_order, reference_checkout, run, write_rows
from nas.errors import UserError
from nas.runs.record import read_supernet_record as supernet_record
from searchspace import save_arch_file

# One refusal per command, each found by its own check (not by argparse); then two missing folders, a file that is
# no supernet, two missing dataset folders and a path budget no arch meets.
BAD = [
    ["search", "--budget", "4.5GB"],
    ["supernet", "--path-budget", "4.5GB"],
    ["retrain", "--arch", "/no/such/arch.json"],
    ["check-ranking", "--seeds", "0"],
    ["cost", "--arch", "/no/such/arch.json"],
    ["search", "--resume", "--search-dir", "/no/such/search"],
    ["export", "--run", "/no/such/run", "--onnx", "m.onnx"],
    ["search", "--supernet", str(ROOT / "pyproject.toml")],  # a file, but no checkpoint
    ["supernet", "--dataset", "cifar10", "--data-root", "/no/such/dir"],
    ["search", "--dataset", "cifar100", "--data-root", "/no/such/dir"],
    ["supernet", "--path-budget", "1MFLOPs"],
]


def supernet_lines(supernet: Path, folder: Path) -> list[list[str]]:
    """Refusals by what ``supernet`` recorded: a --train-subset other than its own (``search``, ``retrain --init
    supernet``; the arch and space files written to ``folder``, where they run), a budget below its space's
    cheapest arch (``check-ranking``)."""
    record = supernet_record(supernet)
    (folder / "space.json").write_text(json.dumps(record.space.to_dict()))
    save_arch_file(folder / "arch.json", record.space.sample(random.Random(0)))
    subset = str((record.job.data.train_subset or 0) + 1)  # unset means all the images: any number differs
    file = str(supernet.resolve())  # the commands run in ``folder``
    return [["search", "--space", "space.json", "--supernet", file, "--train-subset", subset],
            ["retrain", "--arch", "arch.json", "--space", "space.json", "--init", "supernet", "--supernet", file,
             "--train-subset", subset],
            ["check-ranking", "--supernet", file, "--budget", "1MFLOPs"]]


def time_refusal(checkout: Path, argv: list[str], cwd: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(checkout / "launch.py"), *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=300)  # launch.py's folder comes first on sys.path: its own nas/
    seconds = time.perf_counter() - start
    lines = done.stderr.strip().splitlines()
    if done.returncode != 2 or len(lines) != 1:
        raise UserError(f"{checkout}: launch.py {' '.join(argv)} gave exit {done.returncode} and "
                        f"{len(lines)} stderr lines (expected 2 and one line): {done.stderr[-300:]}")
    return seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", required=True, help="a checkout of the reference commit (with launch.py)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--supernet", default=None, help="a supernet.pt: also time three refusals by what it recorded")
    p.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    args = p.parse_args()
    checkouts = reference_checkout(args.reference, ROOT)
    reference = checkouts["reference"]
    if args.rounds < 1:
        raise UserError("--rounds must be at least 1")
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as cwd:  # an empty folder: no results/ of either checkout is read
        lines = BAD + (supernet_lines(Path(args.supernet), Path(cwd)) if args.supernet else [])
        for r in range(args.rounds):
            for argv in lines:
                for name in checkout_order(r):
                    times.setdefault((" ".join(argv), name), []).append(time_refusal(checkouts[name], argv, cwd))
    rows = []
    for argv in lines:
        cmd = " ".join(argv)
        this, ref = statistics.median(times[cmd, "this"]), statistics.median(times[cmd, "reference"])
        rows.append({"command": cmd, "this_s": round(this, 3), "reference_s": round(ref, 3),
                     "ratio": round(ref / this, 1)})
        print(f"launch.py {cmd:<40} this {this:6.2f}s  reference {ref:6.2f}s  {ref / this:5.1f}x faster")
    ratios = [r["ratio"] for r in rows]
    summary = {"rounds": args.rounds, "reference": str(reference), "median_ratio": statistics.median(ratios)}
    print(f"median over command lines: {summary['median_ratio']:.1f}x faster than the reference")
    write_rows(args.out, "cli_refusal", summary, rows)
    return 0


if __name__ == "__main__":
    run(main)

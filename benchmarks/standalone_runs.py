"""Stand-alone runs as parallel Ray Tune trials (``check-ranking``, ``retrain --top-k``): this checkout against a
reference checkout, side by side.

One supernet is trained once (this checkout, the default space and data, ``--supernet-epochs``). Each round runs
``launch.py check-ranking`` of each checkout (the order alternating between rounds) on its own copy of that
supernet, so every run starts with an empty stand-alone cache and trains all K archs x S seeds. The archs are the
command's own draw (spread over the archs within the budget), the recipe its defaults unless given. Reported per
checkout: the median wall time, how many processes ran the runs (the ``pid`` Tune records with each result), and
the ratio of the medians (reference / this). Both checkouts run the same jobs with the same seeds: their
stand-alone top-1 must agree run for run, or the script says so and exits 1.

    git worktree add /tmp/ref <commit>          # the reference, e.g. the commit before a change
    python -m benchmarks.standalone_runs --reference /tmp/ref --archs 4 --seeds 2 --rounds 1
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_common import ROOT, checkout_order, reference_checkout, run, write_rows
from nas.errors import UserError


def launch(checkout: Path, argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(checkout / "launch.py"), *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=7200)  # launch.py's folder comes first on sys.path: its own nas/
    if done.returncode != 0:
        raise UserError(f"{checkout}: launch.py {' '.join(argv[:1])} exited {done.returncode}: "
                        f"{done.stderr.strip().splitlines()[-1:] or ''}")
    return time.perf_counter() - start


def run_processes(ranking: Path) -> tuple[int, int]:
    """(runs, distinct processes) of the stand-alone runs under ``ranking``, from Tune's result files."""
    pids = {}
    for path in ranking.glob("standalone/*/ray/*/*/result.json"):
        lines = path.read_text().splitlines()
        if lines:
            pids[path.parent] = json.loads(lines[-1])["pid"]
    return len(pids), len(set(pids.values()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", required=True, help="a checkout of the reference commit (with launch.py)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--archs", type=int, default=4, help="K archs of check-ranking's draw")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--supernet-epochs", type=int, default=1,
                   help="the supernet only supplies the data settings and the inherited scores here")
    p.add_argument("--train-subset", type=int, default=None, help="data: the supernet's (default: the full set)")
    p.add_argument("--recipe", default="", help='stand-alone recipe flags, e.g. "--epochs 1 --batch-size 50" '
                                                "(default: check-ranking's defaults)")
    p.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    args = p.parse_args()
    checkouts = reference_checkout(args.reference, ROOT)
    if args.rounds < 1 or args.archs < 2 or args.seeds < 1:
        raise UserError("--rounds and --seeds must be at least 1, --archs at least 2")
    recipe = args.recipe.split()
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = ["--train-subset", str(args.train_subset)] if args.train_subset else []
        launch(ROOT, ["supernet", "--epochs", str(args.supernet_epochs), "--warmup-epochs", "0", *data,
                      "--run-dir", "sn"], work)
        for r in range(args.rounds):
            for name in checkout_order(r):
                folder = work / f"round{r}-{name}"
                folder.mkdir()
                shutil.copy(work / "sn" / "supernet.pt", folder / "supernet.pt")
                seconds = launch(checkouts[name], ["check-ranking", "--supernet", str(folder / "supernet.pt"),
                                                   "--archs", str(args.archs), "--seeds", str(args.seeds),
                                                   *recipe], work)
                runs, processes = run_processes(folder / "ranking")
                summary = json.loads((folder / "ranking" / "ranking.json").read_text())
                results[r, name] = {a["arch"]: a["standalone_top1_per_seed"] for a in summary["archs"]}
                rows.append({"round": r, "checkout": name, "wall_s": round(seconds, 1), "runs": runs,
                             "processes": processes})
                print(f"round {r} {name:<9} {seconds:7.1f}s  {runs} runs in {processes} processes", flush=True)
    walls = {name: statistics.median(row["wall_s"] for row in rows if row["checkout"] == name) for name in checkouts}
    same = all(results[r, "this"] == results[r, "reference"] for r in range(args.rounds))
    summary = {"reference": str(checkouts["reference"]), "rounds": args.rounds, "archs": args.archs, "seeds": args.seeds,
               "recipe": args.recipe or "check-ranking defaults", "train_subset": args.train_subset,
               "this_s": walls["this"], "reference_s": walls["reference"],
               "ratio": round(walls["reference"] / walls["this"], 2), "same_results": same}
    print(f"check-ranking, {args.archs} archs x {args.seeds} seeds: this {walls['this']:.1f}s, reference "
          f"{walls['reference']:.1f}s: {summary['ratio']:.2f}x; stand-alone top-1 "
          f"{'identical in both' if same else 'DIFFERS between the checkouts'}")
    write_rows(args.out, "standalone_runs", summary, rows)
    return 0 if same else 1


if __name__ == "__main__":
    run(main)

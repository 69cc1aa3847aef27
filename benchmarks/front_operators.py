"""Where does a search's Pareto front put each operator? Per stage, how many front members use each
mixer and each stage entry (pool 1, patch merging, max pooling), for one or more ``pareto.json`` files.

    python -m benchmarks.front_operators results/search-A/pareto.json results/search-B/pareto.json

Prints a markdown table per file and writes ``results/benchmarks/front_operators.json``.
"""
from __future__ import annotations

import argparse
from collections import Counter

from searchspace import Arch, format_flops, write_json_atomic
from searchspace.arch import read_json_file


def entry_label(pool: int, pool_op: str) -> str:
    return "pool 1" if pool == 1 else ("max pool" if pool_op == "maxpool" else "merge")


def tally(front: list[dict]) -> list[dict[str, Counter]]:
    archs = [Arch.from_dict(member) for member in front]
    stages = []
    for i in range(len(archs[0].stages)):
        stages.append({"mixer": Counter(a.stages[i].mixer for a in archs),
                       "entry": Counter(entry_label(a.stages[i].pool, a.stages[i].pool_op) for a in archs)})
    return stages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pareto", nargs="+", help="pareto.json files of searches")
    parser.add_argument("--out", default="results/benchmarks/front_operators.json")
    args = parser.parse_args()
    report = []
    for path in args.pareto:
        data = read_json_file(path)
        front = data["front"]
        stages = tally(front)
        budget = data.get("budget_flops")
        title = f"{path}: {len(front)} front members" + (f", budget {format_flops(budget)} FLOPs" if budget else "")
        print(f"\n{title}\n\n| stage | mixers | entries |\n|---|---|---|")
        for i, s in enumerate(stages, start=1):
            mixers = ", ".join(f"{m} {n}" for m, n in s["mixer"].most_common())
            entries = ", ".join(f"{e} {n}" for e, n in s["entry"].most_common())
            print(f"| {i} | {mixers} | {entries} |")
        print("\nmembers: " + ", ".join(f"`{Arch.from_dict(m).key()}` ({m['top1']:.3f}, {format_flops(m['flops'])})"
                                        for m in front))
        report.append({"pareto": str(path), "budget_flops": budget, "members": [Arch.from_dict(m).key() for m in front],
                       "stages": [{k: dict(v) for k, v in s.items()} for s in stages]})
    write_json_atomic(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

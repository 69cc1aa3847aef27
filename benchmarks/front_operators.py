"""Where does a search's Pareto front put each operator, and do two searches agree? For one or more search runs
(their folders, or their ``pareto.json``):

- per stage, how many front members use each mixer and each stage entry (pool 1, patch merging, max pooling);
- the pick (the front's best top-1, what ``best.json`` holds) stage by stage: mixer, kernel, depth, pool, and how
  far its score leads the best completed trial with another mixer at that stage (from the run's ``trials.csv``): a
  lead within the scores' noise means the search did not decide that stage;
- for every two runs at the same budget (say, supernets of different seeds): which of the picks' stage choices
  agree, and which stages' most common front mixer agrees.

    python -m benchmarks.front_operators results/search-A results/search-B

Prints markdown tables and writes ``results/benchmarks/front_operators.json``.
"""
from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from itertools import combinations
from pathlib import Path

from benchmarks.bench_common import run
from nas.errors import UserError
from searchspace import Arch, format_flops, write_json_atomic
from searchspace.arch import read_json_file

FIELDS = ("mixer", "kernel", "depth", "pool")
SHORT = {"window_attention": "wa", "dwconv": "dw", "dynamic_dwconv": "dd"}


def entry_label(pool: int, pool_op: str) -> str:
    return "pool 1" if pool == 1 else ("max pool" if pool_op == "maxpool" else "merge")


def tally(front: list[dict]) -> list[dict[str, Counter]]:
    archs = [Arch.from_dict(member) for member in front]
    stages = []
    for i in range(len(archs[0].stages)):
        stages.append({"mixer": Counter(a.stages[i].mixer for a in archs),
                       "entry": Counter(entry_label(a.stages[i].pool, a.stages[i].pool_op) for a in archs)})
    return stages


def pick_of(front: list[dict]) -> dict:
    """The front member with the best top-1 (the search's best.json), the cheaper on a tie."""
    return max(front, key=lambda m: (m["top1"], -m["flops"]))


def completed_trials(trials_csv: Path, budget_flops: float | None) -> list[dict]:
    """The completed, in-budget trials of a run's trials.csv: arch and top-1."""
    with trials_csv.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["state"] == "completed" and r["top1"]]
    return [{"arch": Arch.from_dict({"stages": json.loads(r["stages"])}), "top1": float(r["top1"])} for r in rows
            if budget_flops is None or float(r["flops"]) <= budget_flops]


def stage_leads(pick: Arch, pick_top1: float, trials: list[dict]) -> list[float | None]:
    """Per stage: the pick's score minus the best score of a completed trial with another mixer at that stage (None:
    no trial tried another)."""
    leads = []
    for i, stage in enumerate(pick.stages):
        others = [t["top1"] for t in trials if t["arch"].stages[i].mixer != stage.mixer]
        leads.append(pick_top1 - max(others) if others else None)
    return leads


def agreement(a: dict, b: dict) -> dict:
    """Stage by stage, which of two runs' pick choices agree, and whether their fronts' most common mixers do."""
    pa, pb = Arch.from_dict(a["pick"]), Arch.from_dict(b["pick"])
    stages = []
    for i, (sa, sb) in enumerate(zip(pa.stages, pb.stages)):
        ma, mb = (Counter(r["stage_mixers"][i] for r in run_["members"]).most_common(1)[0][0] for run_ in (a, b))
        stages.append({**{f: getattr(sa, f) == getattr(sb, f) for f in FIELDS}, "front_mixer": ma == mb})
    return {"runs": [a["run"], b["run"]], "stages": stages, "pick_mixers_agree": sum(s["mixer"] for s in stages),
            "front_mixers_agree": sum(s["front_mixer"] for s in stages)}


def describe_run(path: Path) -> dict:
    folder = path if path.is_dir() else path.parent
    pareto = read_json_file(folder / "pareto.json")
    front = pareto.get("front") or []
    if not front:
        raise UserError(f"{folder / 'pareto.json'}: an empty front")
    config = read_json_file(folder / "config.json") if (folder / "config.json").is_file() else {}
    budget = pareto.get("budget_flops")
    pick = pick_of(front)
    trials_csv = folder / "trials.csv"
    trials = completed_trials(trials_csv, budget) if trials_csv.is_file() else []
    members = sorted(front, key=lambda m: -m["top1"])
    return {
        "run": str(folder), "budget_flops": budget,
        "supernet_seed": (config.get("supernet_job") or {}).get("train", {}).get("seed"),
        "search_seed": (config.get("search") or {}).get("seed"),
        "pick": {"stages": pick["stages"], "arch": Arch.from_dict(pick).key(), "top1": pick["top1"],
                 "flops": pick["flops"]},
        "pick_stage_leads": stage_leads(Arch.from_dict(pick), pick["top1"], trials) if trials else None,
        "completed_trials": len(trials),
        "members": [{"arch": Arch.from_dict(m).key(), "top1": m["top1"], "flops": m["flops"],
                     "stage_mixers": [s.mixer for s in Arch.from_dict(m).stages]} for m in members],
        "stages": [{k: dict(v) for k, v in s.items()} for s in tally(front)],
    }


def print_run(r: dict) -> None:
    budget = f", budget {format_flops(r['budget_flops'])} FLOPs" if r["budget_flops"] else ""
    print(f"\n{r['run']}: supernet seed {r['supernet_seed']}, search seed {r['search_seed']}{budget}, "
          f"{len(r['members'])} front members, {r['completed_trials']} completed trials")
    print("\n| stage | the pick: mixer, kernel, depth, pool | its lead over another mixer | front mixers | front "
          "entries |\n|---|---|---|---|---|")
    leads = r["pick_stage_leads"] or [None] * len(r["stages"])
    for i, (stage, s, lead) in enumerate(zip(r["pick"]["stages"], r["stages"], leads), start=1):
        mixers = ", ".join(f"{SHORT.get(m, m)} {n}" for m, n in Counter(s["mixer"]).most_common())
        entries = ", ".join(f"{e} {n}" for e, n in Counter(s["entry"]).most_common())
        lead_text = "-" if lead is None else f"{100 * lead:+.2f} points"
        print(f"| {i} | {stage['mixer']} {stage['kernel']}, depth {stage['depth']}, pool {stage['pool']} | "
              f"{lead_text} | {mixers} | {entries} |")
    print("\nmembers (best top-1 first): " + ", ".join(
        f"`{m['arch']}` ({100 * m['top1']:.2f}%, {m['flops'] / 1e9:.2f} G)" for m in r["members"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="search run folders (or their pareto.json)")
    parser.add_argument("--out", default="results/benchmarks/front_operators.json")
    args = parser.parse_args()
    runs = []
    for given in args.runs:
        path = Path(given)
        if not (path / "pareto.json").is_file() and not (path.is_file() and path.name == "pareto.json"):
            raise UserError(f"{given}: not a search run folder nor its pareto.json")
        runs.append(describe_run(path))
    for r in runs:
        print_run(r)
    pairs = [agreement(a, b) for a, b in combinations(runs, 2) if a["budget_flops"] == b["budget_flops"]]
    for p in pairs:
        print(f"\n{p['runs'][0]} vs {p['runs'][1]}: the picks' mixers agree at {p['pick_mixers_agree']} of "
              f"{len(p['stages'])} stages, the fronts' most common mixers at {p['front_mixers_agree']}")
        print("| stage | " + " | ".join(FIELDS) + " | front's most common mixer |\n|---" * 1 + "|---" * len(FIELDS)
              + "|---|")
        for i, s in enumerate(p["stages"], start=1):
            print(f"| {i} | " + " | ".join("same" if s[f] else "differs" for f in (*FIELDS, "front_mixer")) + " |")
    write_json_atomic(args.out, {"runs": runs, "agreement": pairs})
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    run(main)

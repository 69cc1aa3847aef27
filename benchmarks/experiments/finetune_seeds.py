"""How much of a fine-tuned score is the fine-tuning seed? Each arch of a ``supernet_seeds.py`` run re-scored with
more fine-tuning seeds, and the Kendall tau of the mean score against the same stand-alone truth.

``supernet_seeds.py`` scores every arch with the seed of its check (``check-ranking --seed``), as the search
and check-ranking do. This script reads that run's rows at one step count, scores each (supernet, arch) again with
``--extra`` more seeds (the check's seed + 1000 k, k = 1..extra) through the same ``evaluate_arch``, and reports
per supernet and draw the tau of each single seed and of the mean over seeds (top-1, and minus the validation loss).

    python -m benchmarks.supernet_seeds --truth d0.json d1.json --seeds 0,1,2 --finetune-steps 0,48
    python -m benchmarks.experiments.finetune_seeds --rows results/benchmarks/supernet_seeds-e16.json --extra 1
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from benchmarks.bench_common import ROOT, run, write_rows
from benchmarks.supernet_seeds import read_result_rows
from nas.data.datasets import build_data
from nas.errors import UserError
from nas.ranking.stats import kendall_tau
from nas.settings import FINETUNE_STEPS, SupernetJob
from nas.train.evaluate import evaluate_arch
from nas.train.supernet import load_supernet, load_supernet_state
from searchspace import Arch, SearchSpace
from searchspace.arch import read_json_file

SEED_STRIDE = 1000  # far from the check seeds (0, 1, 2, ...) so that no extra seed repeats another draw's


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", required=True, help="a supernet_seeds-e<N>.json written by benchmarks/supernet_seeds.py")
    p.add_argument("--extra", type=int, default=1, help="fine-tuning seeds to add to each arch's first (default 1)")
    p.add_argument("--finetune-steps", type=int, default=FINETUNE_STEPS)
    p.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    args = p.parse_args()
    if args.extra < 1 or args.finetune_steps < 1:
        raise UserError("--extra and --finetune-steps must be 1 or more")
    summary, first = read_result_rows(args.rows, args.finetune_steps)
    truths = {path: read_json_file(path) for path in summary["truth"]}

    rows = []
    for supernet in sorted({r["supernet"] for r in first}):
        state = load_supernet_state(supernet)
        job, space = SupernetJob.from_dict(state["job"]), SearchSpace.from_dict(state["space"])
        dataset, net = build_data(job.data), load_supernet(supernet, state=state)
        for row in (r for r in first if r["supernet"] == supernet):
            config = truths[row["truth"]]["config"]
            stages = next(a["stages"] for a in truths[row["truth"]]["archs"] if a["arch"] == row["arch"])
            arch = space.validate(Arch.from_dict({"stages": stages}))
            scores = [(row["inherited_top1"], row["inherited_val_loss"])]
            for k in range(1, args.extra + 1):
                result = evaluate_arch(net, arch, dataset, recalib_batches=config["recalib_batches"],
                                       seed=config["seed"] + SEED_STRIDE * k, finetune_steps=args.finetune_steps,
                                       recipe=job.train)
                scores.append((result["top1"], result["loss"]))
            rows.append({**{k: row[k] for k in ("supernet_seed", "epochs", "truth", "arch", "standalone_top1")},
                         "finetune_steps": args.finetune_steps,
                         "top1_per_seed": [s[0] for s in scores], "val_loss_per_seed": [s[1] for s in scores],
                         "mean_top1": statistics.fmean(s[0] for s in scores),
                         "mean_val_loss": statistics.fmean(s[1] for s in scores), "supernet": supernet})
        print(f"scored {supernet}", flush=True)

    table = []
    for seed in sorted({r["supernet_seed"] for r in rows}):
        for name in [*truths, "pooled"]:
            chosen = [r for r in rows if r["supernet_seed"] == seed and name in ("pooled", r["truth"])]
            truth = [r["standalone_top1"] for r in chosen]
            table.append({"supernet_seed": seed, "truth": name, "archs": len(chosen),
                          "tau_top1_per_seed": [kendall_tau([r["top1_per_seed"][k] for r in chosen], truth)
                                                for k in range(args.extra + 1)],
                          "tau_mean_top1": kendall_tau([r["mean_top1"] for r in chosen], truth),
                          "tau_mean_neg_loss": kendall_tau([-r["mean_val_loss"] for r in chosen], truth)})
    print(f"\n{'truth':<22} {'seed':>4} {'archs':>5} {'tau top-1 of each fine-tuning seed':>36} {'of the mean':>11} "
          f"{'-loss mean':>10}")
    for t in table:
        each = " / ".join(f"{v:.3f}" for v in t["tau_top1_per_seed"])
        print(f"{Path(t['truth']).name:<22} {t['supernet_seed']:>4} {t['archs']:>5} {each:>36} "
              f"{t['tau_mean_top1']:>11.3f} {t['tau_mean_neg_loss']:>10.3f}")
    pooled = [t for t in table if t["truth"] == "pooled"]
    summary = {"rows_of": args.rows, "finetune_steps": args.finetune_steps, "seeds_per_arch": args.extra + 1,
               "seed_rule": f"the check's seed + {SEED_STRIDE} k", "by_truth": table,
               "pooled_mean_tau_single_seed": statistics.fmean(statistics.fmean(t["tau_top1_per_seed"]) for t in pooled),
               "pooled_mean_tau_of_mean": statistics.fmean(t["tau_mean_top1"] for t in pooled)}
    print(f"pooled, mean over supernets: tau of one fine-tuning seed {summary['pooled_mean_tau_single_seed']:.3f}, "
          f"of the mean of {args.extra + 1} {summary['pooled_mean_tau_of_mean']:.3f}")
    write_rows(args.out, f"finetune_seeds-e{first[0]['epochs']}", summary, rows)
    return 0


if __name__ == "__main__":
    run(main)

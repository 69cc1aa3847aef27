"""Signals beside a supernet's fine-tuned score: a short run of each arch from scratch, and a correction learned
from stand-alone truth. Both are measured against the truth of ``check-ranking``, never fitted on the draw they
are scored on.

Reads the rows ``benchmarks/supernet_seeds.py`` writes (each arch's score after the fine-tuning steps, per supernet
seed) and the truth files they were scored against, then reports, pooled over the truth's archs, per supernet seed:

- *from scratch* (``--scratch-steps N``, 0 to skip): each arch built with fresh weights (seed ``--scratch-seed``) and
  trained N steps of the supernet's recipe, as the fine-tuning trains an inherited one; the mean training loss
  of those steps is how fast the arch learns alone (Ru et al., 2021), the quantity a 10-epoch truth rewards and a
  long-trained supernet cannot see. Its tau alone, and of minus the sum of the three losses (the fine-tuning's
  validation and training loss, and this one: the same units, nothing fitted).
- *calibration*: a ridge regression of the stand-alone top-1 on the fine-tuned score and the arch's choices
  (per stage: a one-hot of the mixer, kernel, depth and pooling scaled to their largest value), fitted on every
  draw but one and scored on the one left out; the ridge strength is chosen by the same leave-one-draw-out inside
  the training draws (nested), so nothing is tuned on the draw scored. Needs at least three truth files.
- *ensembles* (with rows of two or more supernet seeds): each arch scored by its mean over every subset of two or
  more of the supernets (the same arch fine-tuned from each), of each score ``supernet_seeds.py`` reports, and of
  minus the three losses with the from-scratch loss added once to that mean. What averaging supernets buys, and at what cost.

    python -m benchmarks.supernet_seeds --truth benchmarks/truth/mnist-cluttered-draw*.json --seeds 0,1,2 --finetune-steps 48
    python -m benchmarks.experiments.ranking_signals --rows results/benchmarks/supernet_seeds-e16.json --scratch-steps 48
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_common import ROOT, run, write_rows
from benchmarks.supernet_seeds import SCORES, average_over_supernets, read_result_rows, read_truth, score_taus
from nas.data.datasets import build_data
from nas.errors import UserError
from nas.ranking.stats import kendall_tau
from nas.settings import SupernetJob
from nas.train.finetune import finetune
from nas.train.supernet import load_supernet_state
from searchspace import Arch, SearchSpace
from supernet import MixerNet
from supernet.network import NetSettings

RIDGE_STRENGTHS = (0.1, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)


def arch_features(space: SearchSpace, stages: list[dict]) -> list[float]:
    """Per stage: a one-hot of the mixer among the space's, then kernel, depth and pool over their largest values."""
    out: list[float] = []
    for choices, stage in zip(space.to_dict()["stages"], stages):
        out += [float(stage["mixer"] == m) for m in choices["mixers"]]
        out += [stage[key] / max(choices[f"{key}s"]) for key in ("kernel", "depth", "pool")]
    return out


def fit_ridge(x: np.ndarray, y: np.ndarray, strength: float):
    """A ridge regression on standardised columns; returns the predictor of new rows."""
    mean, scale = x.mean(0), x.std(0) + 1e-9
    xs = (x - mean) / scale
    weights = np.linalg.solve(xs.T @ xs + strength * np.eye(x.shape[1]), xs.T @ (y - y.mean()))
    return lambda rows: ((rows - mean) / scale) @ weights


def leave_one_draw_out(x: np.ndarray, y: np.ndarray, draws: list[str], strength: float) -> np.ndarray:
    """Each row predicted by the ridge fitted on the other draws' rows."""
    pred = np.empty(len(y))
    for draw in sorted(set(draws)):
        held = np.array([d == draw for d in draws])
        pred[held] = fit_ridge(x[~held], y[~held], strength)(x[held])
    return pred


def nested_calibration(x: np.ndarray, y: np.ndarray, draws: list[str]) -> tuple[list[float], list[float]]:
    """Per held-out draw: the tau of the calibrated prediction on it, and the ridge strength chosen on the others
    (by the tau of their own leave-one-draw-out predictions)."""
    taus, strengths = [], []
    for draw in sorted(set(draws)):
        held = np.array([d == draw for d in draws])
        inner = [d for d, h in zip(draws, held) if not h]

        def inner_tau(strength: float) -> float:
            return kendall_tau(leave_one_draw_out(x[~held], y[~held], inner, strength).tolist(), y[~held].tolist())

        strength = max(RIDGE_STRENGTHS, key=inner_tau)
        pred = fit_ridge(x[~held], y[~held], strength)(x[held])
        taus.append(kendall_tau(pred.tolist(), y[held].tolist()))
        strengths.append(strength)
    return taus, strengths


def scratch_losses(truths: list[dict], space: SearchSpace, job: SupernetJob, settings: NetSettings, *, steps: int,
                   seed: int) -> dict[str, float]:
    """Each arch's mean training loss over ``steps`` steps of the recipe from fresh weights (seeded)."""
    data = build_data(job.data)
    losses: dict[str, float] = {}
    for truth in truths:
        for item in truth["archs"]:
            if item["arch"] in losses:
                continue
            arch = space.validate(Arch.from_dict({"stages": item["stages"]}))
            torch.manual_seed(seed)
            net = MixerNet.from_arch(arch, settings)
            losses[item["arch"]] = finetune(net, data.train, job.train, steps=steps, seed=seed)
    return losses


def neg_three_losses(row: dict, scratch: dict[str, float]) -> float:
    """Minus (validation loss + the fine-tuning's training loss + the from-scratch training loss) of one row."""
    return SCORES["neg_val_train_loss"](row) - scratch[row["arch"]]


def ensemble_taus(rows: list[dict], scratch: dict[str, float]) -> list[dict]:
    """Kendall tau of each arch's mean score over every subset of two or more supernet seeds in ``rows`` (one row per
    arch and seed); with ``scratch``, also of that mean loss sum minus the arch's from-scratch loss (counted once:
    it does not depend on the supernet)."""
    seeds = sorted({r["supernet_seed"] for r in rows})
    per_arch = Counter(r["arch"] for r in rows)
    if any(count != len(seeds) for count in per_arch.values()):
        raise UserError("every arch needs a row for every supernet seed to average them")
    out = []
    for size in range(2, len(seeds) + 1):
        for subset in itertools.combinations(seeds, size):
            averaged = average_over_supernets([r for r in rows if r["supernet_seed"] in subset])
            line = {"supernet_seeds": list(subset), "archs": len(averaged),
                    **{f"tau_{name}": tau for name, tau in score_taus(averaged).items()}}
            if scratch:
                line["tau_neg_three_losses"] = kendall_tau([neg_three_losses(r, scratch) for r in averaged],
                                                           [r["standalone_top1"] for r in averaged])
            out.append(line)
    return out


def before_after(line: dict, name: str) -> str:
    """A seed's mean per-draw tau of ``name`` uncorrected / calibrated, or "-" without a calibration."""
    if f"per_draw_tau_{name}" not in line:
        return "-"
    return f"{line[f'per_draw_tau_{name}']:.3f} / {line[f'per_draw_tau_calibrated_{name}']:.3f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", required=True, help="a supernet_seeds.py result (JSON) with fine-tuned rows")
    p.add_argument("--finetune-steps", type=int, default=48, help="which of its fine-tuning rows to read (default 48)")
    p.add_argument("--scratch-steps", type=int, default=48, help="steps from scratch per arch (0: skip; default 48)")
    p.add_argument("--scratch-seed", type=int, default=0, help="the fresh weights' and batches' seed (default 0)")
    p.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    args = p.parse_args()
    if args.scratch_steps < 0 or args.finetune_steps < 1:
        raise UserError(f"--scratch-steps must be 0 or more and --finetune-steps 1 or more (the training loss of the "
                        f"steps is one of the scores), got {args.scratch_steps} and {args.finetune_steps}")
    summary_in, rows = read_result_rows(args.rows, args.finetune_steps)
    truth_paths = summary_in["truth"]
    # As given to supernet_seeds.py: relative to where it ran, or (the kept truth) to the repository root.
    truths = [read_truth(str(path if Path(path).exists() else ROOT / path)) for path in truth_paths]
    state = load_supernet_state(Path(summary_in["checked_supernet"]))
    job, space = SupernetJob.from_dict(state["job"]), SearchSpace.from_dict(state["space"])
    stages = {a["arch"]: a["stages"] for t in truths for a in t["archs"]}

    scratch: dict[str, float] = {}
    if args.scratch_steps:
        start = time.perf_counter()
        scratch = scratch_losses(truths, space, job, NetSettings.from_dict(state["settings"]),
                                 steps=args.scratch_steps, seed=args.scratch_seed)
        print(f"{len(scratch)} archs trained {args.scratch_steps} steps from scratch in "
              f"{time.perf_counter() - start:.0f}s", flush=True)

    table, out_rows = [], []
    for seed in sorted({r["supernet_seed"] for r in rows}):
        # Each arch once, should two draws share one (the truth is the same cached runs).
        chosen = list({r["arch"]: r for r in rows if r["supernet_seed"] == seed}.values())
        truth = [r["standalone_top1"] for r in chosen]
        line = {"supernet_seed": seed, "archs": len(chosen)}
        line.update({f"tau_{name}": kendall_tau([score(r) for r in chosen], truth) for name, score in SCORES.items()})
        if scratch:
            line["tau_neg_scratch_loss"] = kendall_tau([-scratch[r["arch"]] for r in chosen], truth)
            line["tau_neg_three_losses"] = kendall_tau([neg_three_losses(r, scratch) for r in chosen], truth)
        if len(truths) >= 3:
            draws = [r["truth"] for r in chosen]
            for name in ("top1", "neg_val_train_loss"):
                x = np.array([[SCORES[name](r), *arch_features(space, stages[r["arch"]])] for r in chosen])
                taus, strengths = nested_calibration(x, np.array(truth), draws)
                plain = [kendall_tau([SCORES[name](r) for r in chosen if r["truth"] == d],
                                     [r["standalone_top1"] for r in chosen if r["truth"] == d])
                         for d in sorted(set(draws))]
                line[f"per_draw_tau_{name}"] = statistics.fmean(plain)
                line[f"per_draw_tau_calibrated_{name}"] = statistics.fmean(taus)
                line[f"ridge_strengths_{name}"] = strengths
        table.append(line)
        out_rows += [{"supernet_seed": seed, "arch": r["arch"], "truth": r["truth"],
                      "standalone_top1": r["standalone_top1"], "inherited_top1": r["inherited_top1"],
                      "inherited_val_loss": r["inherited_val_loss"], "finetune_train_loss": r["finetune_train_loss"],
                      "scratch_train_loss": scratch.get(r["arch"])} for r in chosen]

    print(f"\n{'seed':>4} {'archs':>5} {'top-1':>6} {'-(val+train)':>12} {'-scratch':>8} {'-3 losses':>9} "
          f"{'draw: top-1 / calibrated':>24} {'-(val+train) / calibrated':>26}")
    for t in table:
        print(f"{t['supernet_seed']:>4} {t['archs']:>5} {t['tau_top1']:>6.3f} {t['tau_neg_val_train_loss']:>12.3f} "
              f"{t.get('tau_neg_scratch_loss', float('nan')):>8.3f} {t.get('tau_neg_three_losses', float('nan')):>9.3f} "
              f"{before_after(t, 'top1'):>24} {before_after(t, 'neg_val_train_loss'):>26}")
    means = {key: statistics.fmean(t[key] for t in table)
             for key in table[0] if key.startswith(("tau_", "per_draw_tau_"))}
    print("mean over supernet seeds: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()))
    ensembles = ensemble_taus(out_rows, scratch) if len(table) > 1 else []
    if ensembles:
        print(f"\n{'ensemble of supernet seeds':<27} {'top-1':>6} {'-(val+train)':>12} {'-3 losses':>9}")
        for e in ensembles:
            print(f"{','.join(map(str, e['supernet_seeds'])):<27} {e['tau_top1']:>6.3f} "
                  f"{e['tau_neg_val_train_loss']:>12.3f} {e.get('tau_neg_three_losses', float('nan')):>9.3f}")
    ensemble_means: dict[str, dict[str, float]] = {}
    for size in sorted({len(e["supernet_seeds"]) for e in ensembles}):
        group = [e for e in ensembles if len(e["supernet_seeds"]) == size]
        ensemble_means[str(size)] = {key: statistics.fmean(e[key] for e in group) for key in group[0]
                                     if key.startswith("tau_")}
    for size, m in ensemble_means.items():
        print(f"mean over ensembles of {size} supernets: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()))
    summary = {"rows": args.rows, "finetune_steps": args.finetune_steps, "scratch_steps": args.scratch_steps,
               "scratch_seed": args.scratch_seed, "truth": truth_paths, "by_seed": table, "mean": means,
               "ensembles": ensembles, "ensemble_mean_by_size": ensemble_means}
    write_rows(args.out, f"ranking_signals-scratch{args.scratch_steps}", summary, out_rows)
    return 0


if __name__ == "__main__":
    run(main)

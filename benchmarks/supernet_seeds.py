"""How much of a supernet's ranking is its own training seed? Kendall tau of supernets that differ only in their
seed (and, if asked, epochs) against one stand-alone truth.

The truth is one or more ``ranking.json`` files written by ``launch.py check-ranking`` (each arch's stand-alone
top-1, mean over seeds; copy the file after each check, the next one overwrites it). The supernets are trained
by the product's ``train_supernet`` from the job recorded with the checked supernet, only ``train.seed`` and
``train.epochs`` changed; the checked supernet itself is reused where that is the same job. Inherited top-1 and
validation loss come from ``evaluate_arch`` with each check's recalibration batches and seed, as check-ranking
computes them, once per ``--finetune-steps`` value (0: the inherited weights as they are; N: each arch first
trained alone N steps of the supernet's recipe, as the search does). Reported per truth file and pooled over their
archs: tau of top-1, of minus the validation loss, with fine-tuning also of minus (validation loss + the mean training
loss of the steps), and the truth's noise ceiling (what a perfect predictor could expect against it).

The default task's truth is kept in the repository (benchmarks/truth/: draws 0-3 of ``check-ranking --seeds 5``),
so the taus of docs/BENCHMARKS.md are reproduced without its 320 stand-alone runs:

    python launch.py supernet --path-budget 4.5GFLOPs     # the default search's supernet, if not trained yet
    python -m benchmarks.supernet_seeds --truth benchmarks/truth/mnist-cluttered-draw*.json --seeds 0,1,2 --finetune-steps 48

Another task's truth comes from check-ranking:

    python launch.py check-ranking --seed 0 && cp <supernet dir>/ranking/ranking.json ranking-draw0.json
    python launch.py check-ranking --seed 1 && cp <supernet dir>/ranking/ranking.json ranking-draw1.json
    python -m benchmarks.supernet_seeds --truth ranking-draw0.json ranking-draw1.json --seeds 0,1,2 [--epochs 24] \
        [--finetune-steps 0,48] [--finetune-lr-scale 2] [--recalib-batches 32] [--finetune-warmup 8] \
        [--finetune-average-last 16]
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

from benchmarks.bench_common import ROOT, run, write_rows
from benchmarks.experiments.finetune_variants import check_finetune_variants, evaluate_arch_variant
from nas.data.datasets import build_data
from nas.errors import UserError
from nas.ranking.stats import kendall_tau, noise_ceiling_tau
from nas.runs.layout import SUPERNET as FINAL
from nas.runs.run import Run
from nas.settings import FINETUNE_STEPS, SupernetJob
from nas.train.supernet import load_supernet, load_supernet_state, train_supernet
from searchspace import Arch, SearchSpace
from searchspace.arch import read_json_file
from supernet.sampler import SAMPLERS

# The scores a supernet could rank archs by, each from one evaluate_arch row; None where a row lacks it (the
# fine-tuning's training loss needs fine-tuning).
SCORES = {
    "top1": lambda r: r["inherited_top1"],
    "neg_loss": lambda r: -r["inherited_val_loss"],
    "neg_val_train_loss": lambda r: (None if r["finetune_train_loss"] is None
                                     else -(r["inherited_val_loss"] + r["finetune_train_loss"])),
}


def score_taus(selected: list[dict]) -> dict[str, float | None]:
    """Kendall tau of each score against the stand-alone truth (None for a score the rows lack)."""
    truth = [r["standalone_top1"] for r in selected]
    out = {}
    for name, score in SCORES.items():
        values = [score(r) for r in selected]
        out[name] = None if None in values else kendall_tau(values, truth)
    return out


def average_over_supernets(rows: list[dict]) -> list[dict]:
    """One row per arch whose scores are its mean over ``rows`` (one per supernet that scored it): an ensemble's
    scores, ready for ``score_taus``. The fine-tuning's training loss is None where a row lacks it."""
    by_arch: dict[str, list[dict]] = {}
    for r in rows:
        by_arch.setdefault(r["arch"], []).append(r)
    return [{"arch": arch, "standalone_top1": rs[0]["standalone_top1"],
             "inherited_top1": statistics.fmean(r["inherited_top1"] for r in rs),
             "inherited_val_loss": statistics.fmean(r["inherited_val_loss"] for r in rs),
             "finetune_train_loss": (None if any(r["finetune_train_loss"] is None for r in rs)
                                     else statistics.fmean(r["finetune_train_loss"] for r in rs))}
            for arch, rs in by_arch.items()]


def fmt(tau: float | None) -> str:
    return "-" if tau is None else f"{tau:.3f}"


def read_truth(path: str) -> dict:
    data = read_json_file(path)
    if not isinstance(data, dict) or not all(k in data for k in ("archs", "supernet", "config")):
        raise UserError(f"{path}: not a ranking.json written by launch.py check-ranking")
    return data


def read_result_rows(path: str, finetune_steps: int) -> tuple[dict, list[dict]]:
    """A result this script wrote (its summary) and its rows at ``finetune_steps`` fine-tuning steps."""
    data = read_json_file(path)
    if not isinstance(data, dict) or "rows" not in data or "summary" not in data:
        raise UserError(f"{path}: not a file written by benchmarks/supernet_seeds.py")
    rows = [r for r in data["rows"] if r["finetune_steps"] == finetune_steps]
    if not rows:
        raise UserError(f"{path}: no rows at {finetune_steps} fine-tuning steps")
    return data["summary"], rows


def truth_supernet(truth: dict, path: str) -> Path:
    """The checked supernet: a check-ranking report names it by its absolute path, a truth kept in the repository
    (benchmarks/truth/) relative to the repository root, with the command that trains it."""
    supernet = Path(truth["supernet"])
    supernet = supernet if supernet.is_absolute() else ROOT / supernet
    if not supernet.is_file():
        how = f"; train it with: {truth['supernet_command']}" if truth.get("supernet_command") else ""
        raise UserError(f"{path}: its supernet {supernet} does not exist{how}")
    return supernet


def supernet_for(job: SupernetJob, checked: Path, checked_job: SupernetJob, out_dir: Path) -> Path:
    """The checked supernet when ``job`` trains the same weights, else one trained (or resumed) under ``out_dir``."""
    if job.fingerprint() == checked_job.fingerprint():
        return checked
    run_dir = out_dir / f"e{job.train.epochs}-s{job.train.seed}-{job.fingerprint()}"
    if not (run_dir / FINAL).exists():
        train_supernet(job, Run(run_dir), resume=True, progress=False)
    return run_dir / FINAL


def seed_list(text: str) -> list[int]:
    return [int(s) for s in text.split(",")]  # a ValueError becomes argparse's one-line usage error


def steps_list(text: str) -> list[int]:
    steps = seed_list(text)
    if any(s < 0 for s in steps):
        raise ValueError(text)
    return steps


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--truth", nargs="+", required=True, help="ranking.json files of check-ranking, one per draw")
    p.add_argument("--seeds", type=seed_list, default=[0, 1, 2], help="supernet training seeds (default 0,1,2)")
    p.add_argument("--epochs", type=int, default=None, help="supernet epochs (default: the checked supernet's)")
    p.add_argument("--path-sampler", choices=SAMPLERS, default=None,
                   help="the supernets' path sampler (default: the checked supernet's); its path budget is kept")
    p.add_argument("--inplace-distill", action="store_true",
                   help="the sandwich's largest path teaches the others (needs --path-sampler sandwich)")
    p.add_argument("--finetune-steps", type=steps_list, default=[0, FINETUNE_STEPS],
                   help=f"fine-tuning steps before each evaluation, a comma list (default 0,{FINETUNE_STEPS})")
    p.add_argument("--finetune-lr-scale", type=float, default=1.0,
                   help="the fine-tuning's learning rate as a multiple of the recipe's peak (default 1: the product's)")
    p.add_argument("--finetune-warmup", type=int, default=0,
                   help="steps of linear learning-rate warm-up from 0 at the start of the fine-tuning (default 0: "
                        "the product's, which starts at the peak)")
    p.add_argument("--finetune-average-last", type=int, default=0,
                   help="score the mean of the weights after each of the fine-tuning's last N steps (default 0: the "
                        "last weights, the product's)")
    p.add_argument("--recalib-batches", type=int, default=None,
                   help="BatchNorm recalibration batches of each evaluation (default: each check's, as it scored)")
    p.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    args = p.parse_args()
    if args.recalib_batches is not None and args.recalib_batches < 1:
        raise UserError(f"--recalib-batches must be at least 1, got {args.recalib_batches}")
    if not args.finetune_lr_scale > 0:
        raise UserError(f"--finetune-lr-scale must be positive, got {args.finetune_lr_scale}")
    for steps in (s for s in args.finetune_steps if s > 0):
        try:
            check_finetune_variants(steps, args.finetune_warmup, args.finetune_average_last)
        except ValueError:
            raise UserError(f"--finetune-warmup {args.finetune_warmup} and --finetune-average-last "
                            f"{args.finetune_average_last} must lie within each --finetune-steps value") from None
    seeds = args.seeds
    truths = [read_truth(path) for path in args.truth]
    checked = truth_supernet(truths[0], args.truth[0])
    if any(truth_supernet(t, path) != checked for t, path in zip(truths, args.truth)):
        raise UserError("--truth files come from different supernets: their truths were trained on other data")
    state = load_supernet_state(checked)
    base = SupernetJob.from_dict(state["job"])
    space = SearchSpace.from_dict(state["space"])
    data = build_data(base.data)
    epochs = args.epochs or base.train.epochs
    sampler = args.path_sampler or base.path_sampler
    variant = dataclasses.replace(base, path_sampler=sampler, inplace_distill=args.inplace_distill)

    rows = []
    for seed in seeds:
        job = dataclasses.replace(variant, train=dataclasses.replace(base.train, seed=seed, epochs=epochs))
        start = time.perf_counter()
        path = supernet_for(job, checked, base, Path(args.out) / "supernet_seeds")
        trained = time.perf_counter() - start
        net = load_supernet(path)
        finetune_recipe = dataclasses.replace(job.train, lr=job.train.lr * args.finetune_lr_scale)
        for draw, truth in zip(args.truth, truths):
            recalib = args.recalib_batches or truth["config"]["recalib_batches"]
            for item in truth["archs"]:
                arch = space.validate(Arch.from_dict({"stages": item["stages"]}))
                for steps in args.finetune_steps:
                    # The variants change the fine-tuning; the weights as they are (0 steps) have none.
                    warmup, average = (args.finetune_warmup, args.finetune_average_last) if steps else (0, 0)
                    result = evaluate_arch_variant(net, arch, data, recalib_batches=recalib,
                                                   seed=truth["config"]["seed"], finetune_steps=steps,
                                                   recipe=finetune_recipe, warmup_steps=warmup, average_last=average)
                    rows.append({"supernet_seed": seed, "epochs": epochs, "finetune_steps": steps,
                                 "finetune_warmup": warmup, "finetune_average_last": average,
                                 "recalib_batches": recalib, "truth": draw,
                                 "arch": item["arch"], "inherited_top1": result["top1"],
                                 "inherited_val_loss": result["loss"], "finetune_train_loss": result.get("train_loss"),
                                 "standalone_top1": item["standalone_top1"], "supernet": str(path)})
        print(f"supernet seed {seed}: {path} ({trained:.0f}s to train or load)", flush=True)

    groups = [(draw, [t]) for draw, t in zip(args.truth, truths)] + ([("pooled", truths)] if len(truths) > 1 else [])
    table = []
    for name, group in groups:
        # Pooled: each arch once, should two draws share one (the truth is the same cached runs).
        archs = {a["arch"]: a for t in group for a in t["archs"]}
        ceiling = noise_ceiling_tau([a["standalone_top1_per_seed"] for a in archs.values()])
        for seed in seeds:
            for steps in args.finetune_steps:
                chosen = list({r["arch"]: r for r in rows if r["supernet_seed"] == seed and r["finetune_steps"] == steps
                               and (name == "pooled" or r["truth"] == name)}.values())
                taus = score_taus(chosen)
                table.append({"truth": name, "supernet_seed": seed, "epochs": epochs, "finetune_steps": steps,
                              "archs": len(chosen), **{f"tau_{k}": v for k, v in taus.items()},
                              "noise_ceiling": ceiling})
    print(f"\n{'truth':<40} {'seed':>4} {'steps':>5} {'archs':>5} {'tau top-1':>9} {'tau -loss':>9} "
          f"{'-(val+train)':>12} {'ceiling':>7}")
    for t in table:
        print(f"{Path(t['truth']).name if t['truth'] != 'pooled' else 'pooled':<40} {t['supernet_seed']:>4} "
              f"{t['finetune_steps']:>5} {t['archs']:>5} {t['tau_top1']:>9.3f} {t['tau_neg_loss']:>9.3f} "
              f"{fmt(t['tau_neg_val_train_loss']):>12} {t['noise_ceiling']:>7.2f}")
    summary = {"checked_supernet": str(checked), "epochs": epochs, "seeds": seeds, "truth": args.truth,
               "path_sampler": sampler, "inplace_distill": args.inplace_distill,
               "finetune_steps": args.finetune_steps, "finetune_lr_scale": args.finetune_lr_scale,
               "finetune_warmup": args.finetune_warmup, "finetune_average_last": args.finetune_average_last,
               "by_truth": table, "by_steps": {}}
    for steps in args.finetune_steps:
        pooled = [t for t in table if t["truth"] == groups[-1][0] and t["finetune_steps"] == steps]
        by = {"range_tau_top1": [min(t["tau_top1"] for t in pooled), max(t["tau_top1"] for t in pooled)]}
        for name in SCORES:
            values = [t[f"tau_{name}"] for t in pooled]
            by[f"mean_tau_{name}"] = None if None in values else statistics.fmean(values)
        # The supernets as one ensemble: each arch scored by its mean over them (are their errors shared?).
        # Each arch once per supernet, as above, should two draws share one.
        chosen = {(r["arch"], r["supernet_seed"]): r for r in rows if r["finetune_steps"] == steps
                  and (groups[-1][0] == "pooled" or r["truth"] == groups[-1][0])}
        ensemble = average_over_supernets(list(chosen.values()))
        by.update({f"ensemble_tau_{k}": v for k, v in score_taus(ensemble).items()})
        summary["by_steps"][str(steps)] = by
        print(f"{groups[-1][0]}, {steps} fine-tuning steps: tau of top-1 over supernet seeds {seeds}: mean "
              f"{by['mean_tau_top1']:.3f}, range {by['range_tau_top1'][0]:.3f}-{by['range_tau_top1'][1]:.3f}; of "
              f"minus the validation loss: mean {by['mean_tau_neg_loss']:.3f}; of minus (validation + training "
              f"loss): mean {fmt(by['mean_tau_neg_val_train_loss'])}; of their mean score over the supernets (an "
              f"ensemble): {by['ensemble_tau_top1']:.3f} / {by['ensemble_tau_neg_loss']:.3f} / "
              f"{fmt(by['ensemble_tau_neg_val_train_loss'])}")
    scale = "" if args.finetune_lr_scale == 1 else f"-lr{args.finetune_lr_scale:g}"
    scale += (f"-warm{args.finetune_warmup}" if args.finetune_warmup else "") + \
        (f"-avg{args.finetune_average_last}" if args.finetune_average_last else "")
    kind = "" if sampler == base.path_sampler and not args.inplace_distill else \
        f"-{sampler}{'-kd' if args.inplace_distill else ''}"
    write_rows(args.out, f"supernet_seeds{kind}-e{epochs}{scale}", summary, rows)
    return 0


if __name__ == "__main__":
    run(main)

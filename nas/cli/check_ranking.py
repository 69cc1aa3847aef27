"""``launch.py check-ranking``: train archs alone and measure how well the supernet ranks them."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from nas.errors import UserError
from nas.ranking.arch_sets import band_archs, read_archs_file
from nas.runs.layout import ranking_dir
from nas.runs.record import read_supernet_record
from nas.runs.storage import Storage
from nas.settings import DEFAULT_BUDGET, DRAWS, Cluster, RankingConfig, TrainConfig
from searchspace import Budget, format_flops
from searchspace.arch import read_json_file

from .common import add_address_argument, add_storage_argument, check_writable_dir, open_run
from .flags import add_setting_flags, settings_from_args

HELP = "train K archs alone (N seeds) and report how well the supernet ranks them (Kendall tau, Spearman rho)"
STANDALONE_FLAGS = ("epochs", "batch_size", "lr")  # the rest of the stand-alone recipe is retrain's default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--supernet", metavar="FILE", default=None,
                        help="a supernet.pt (default: the one the latest search used, from results/best.json)")
    what = parser.add_mutually_exclusive_group()
    add_setting_flags(what, RankingConfig(), ("archs",))
    what.add_argument("--archs-file", metavar="FILE", default=None,
                      help='a JSON file {"archs": [{"stages": [...]}, ...]} (a ranking.json works too)')
    parser.add_argument("--budget", default=None,
                        help="the band the archs are drawn from (default: the supernet's path budget, else 4.5GFLOPs)")
    add_setting_flags(parser, RankingConfig(), ("seeds", "seed", "cpus_per_trial", "recalib_batches",
                                                 "finetune_steps", "score"))
    add_setting_flags(parser, Cluster(), ("max_failures",))
    add_address_argument(parser)
    add_storage_argument(parser)
    g = parser.add_argument_group("stand-alone recipe (the retrain defaults)")
    add_setting_flags(g, TrainConfig(), STANDALONE_FLAGS)


def _default_supernet(storage: Storage) -> Path:
    best = storage.pulled(storage.root / "best.json")
    if not best.exists():
        raise UserError(f"no --supernet given and no {best} (run a search first, or pass --supernet FILE)")
    supernet = (read_json_file(best).get("search") or {}).get("supernet")
    if not supernet:
        raise UserError(f"{best} names no supernet: pass --supernet FILE")
    return storage.localize(supernet)


def run(args: argparse.Namespace) -> int:
    # Every range first (the recipe, the check), then the supernet's record and the archs, all without torch:
    # a bad flag, file or budget costs milliseconds.
    train = settings_from_args(TrainConfig(), args, STANDALONE_FLAGS)
    cfg = settings_from_args(RankingConfig(), args)
    given = Budget.parse(flops=args.budget) if args.budget else None
    storage = args.storage
    supernet = storage.file_path(args.supernet) if args.supernet else _default_supernet(storage)
    record = read_supernet_record(supernet)
    if given is not None:
        budget = given
    elif record.job.path_budget_flops is not None:  # the archs the supernet trained
        budget = record.job.path_budget
    else:
        budget = Budget.parse(flops=DEFAULT_BUDGET)
    cfg = replace(cfg, budget_flops=budget.flops)
    if args.archs_file:
        archs = read_archs_file(args.archs_file, record.space)
        rule = f"from {args.archs_file}"
    else:
        archs = band_archs(record.space, budget, cfg.archs, draws=DRAWS, seed=args.seed)
        rule = (f"{args.archs} archs at evenly spaced FLOPs quantiles of the distinct archs within "
                f"{format_flops(budget.flops)} FLOPs among {DRAWS} uniform draws (seed {args.seed})")

    check_writable_dir(ranking_dir(supernet), "the ranking folder")  # beside the supernet: it may be read-only
    from nas.ranking.check import check_ranking, describe, describe_best_quarter, score_values
    from nas.search.score import SCORES
    from nas.train.supernet import load_supernet_state

    state = load_supernet_state(supernet)
    summary = check_ranking(supernet, archs, cfg, train, run=open_run(args, ranking_dir(supernet)),
                            rule=rule, state=state)

    score = SCORES[cfg.score]
    print(f"\n{'arch':<34} {'GFLOPs':>7} {'score':>8} {'top-1':>8} {'alone':>8}   (score ({cfg.score}) and top-1: "
          f"inherited, validation; alone: test, mean of {cfg.seeds} seeds)")
    rows = sorted(summary["archs"], key=lambda r: -r["standalone_top1"])
    for r, value in zip(rows, score_values(rows, score)):
        shown = f"{100 * value:7.2f}%" if score.percent else f"{value:8.3f}"
        print(f"{r['arch']:<34} {r['flops'] / 1e9:7.2f} {shown} {100 * r['inherited_top1']:7.2f}% "
              f"{100 * r['standalone_top1']:7.2f}%")
    print(f"\n{describe(summary)}; other scores of the same evaluation: top-1 tau {summary['top1_tau']:.3f}, "
          f"minus the validation loss tau {summary['neg_val_loss_tau']:.3f}"
          + (f", minus (validation + fine-tuning training loss) tau {summary['neg_val_train_loss_tau']:.3f}"
             f"; top-1 without the {cfg.finetune_steps} fine-tuning steps: tau {summary['no_finetune_tau']:.3f}"
             if cfg.finetune_steps else "") + f"; -FLOPs alone: tau {summary['neg_flops_tau']:.3f}")
    print(describe_best_quarter(summary))
    out = ranking_dir(supernet)
    print(f"outputs: {out}/ranking.json, ranking.csv, ranking.png")
    return 0

"""Does the search beat random, end to end? The searched arch against random archs under the same budget.

    python -m benchmarks.search_vs_random --best results/best.json --random 5 --seeds 3

Rule: the search's best arch (``--best``, a best.json written by ``launch.py search``) and ``--random`` archs drawn
uniformly from the supernet's space by ``random.Random(--seed)``, kept if within the search's FLOPs budget and
distinct (``--rule uniform``); or, with ``--rule band``, the archs ``launch.py check-ranking --archs N --seed S``
draws (evenly spaced FLOPs quantiles of the distinct in-budget archs among its uniform draws: a sample of the same
in-budget archs, stratified by FLOPs), so a ranking check's stand-alone runs serve as the random set. Each is trained alone with the retrain recipe (``--epochs`` etc., the defaults of ``launch.py retrain``),
``--seeds`` seeds, as parallel Ray Tune trials through ``nas.ranking.check.check_ranking``, so the runs share the
supernet's stand-alone cache with ``launch.py check-ranking``. Reported: the best arch's mean test top-1, the random
archs' median of their means, and the seed-to-seed spread (the mean over the archs of max - min across seeds).
The search wins if best - median > spread.

``--seed-models`` adds the seed papers' networks as points of the space (Swin-T, DWNet-T and dynamic DWNet-T:
depths 2-2-6-2, kernel or window 7; ``searchspace.PUBLISHED_MODELS``), trained with the same recipe and seeds, and
compares the searched arch with the best of them within the budget by the same rule (margin over the seed spread).
``--random 0 --seed-models`` trains only those; ``--seed-models DWNet-T`` (a comma list) only the named.

One draw of five archs can be friendly or not (2026-11-29: +10.6 points on one draw, -0.5 on another), so
``--seed 0,1,2`` draws several sets at once: the verdict per draw, and pooled over every distinct random arch of the
draws, from one Ray run (the runs any draw shares with another, or with an earlier run, are trained once). Writes
``<out-dir>/search_vs_random-seed<S>.json/.csv`` (``S``: the draws joined by ``-``) and the ranking report of the
archs to ``<out-dir>/search_vs_random-seed<S>/``.
"""
from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

from benchmarks.bench_common import run, write_rows
from nas.cli.check_ranking import STANDALONE_FLAGS
from nas.cli.flags import HelpFormatter, add_setting_flags, settings_from_args
from nas.errors import UserError
from nas.ranking.check import check_ranking
from nas.ranking.arch_sets import band_archs
from nas.settings import DRAWS, RankingConfig, TrainConfig
from nas.train.supernet import load_supernet_state
from searchspace import (DEPLOYMENT, PUBLISHED_MODELS, Arch, Budget, SearchSpace, arch_cost, format_flops,
                         parse_flops, published_arch)
from searchspace.arch import load_arch_file, read_json_file


def random_archs(space: SearchSpace, budget: float, count: int, seed: int, exclude: set[str]) -> list[Arch]:
    rng, archs = random.Random(seed), {}
    if count == 0:
        return []
    for _ in range(100_000):
        arch = space.sample(rng)
        if arch.key() not in exclude and arch_cost(arch, DEPLOYMENT).flops <= budget:
            archs.setdefault(arch.key(), arch)
            if len(archs) == count:
                return list(archs.values())
    raise UserError(f"fewer than {count} distinct archs within {format_flops(budget)} FLOPs in 100,000 draws")


def drawn_archs(rule: str, space: SearchSpace, budget: float, count: int, seed: int, exclude: set[str]) -> list[Arch]:
    if rule == "band":
        return [a for a in band_archs(space, Budget(flops=budget), count, draws=DRAWS, seed=seed)
                if a.key() not in exclude]
    return random_archs(space, budget, count, seed, exclude)


def parse_draws(text: str) -> list[int]:
    """``--seed``: one draw (``1``) or a comma list of distinct draws (``0,1,2``)."""
    try:
        draws = [int(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--seed {text}: expected a draw number or a comma list of them, such as 0,1,2") from None
    if len(set(draws)) != len(draws):
        raise UserError(f"--seed {text}: a draw is named twice")
    return draws


def parse_seed_models(text: str) -> list[str]:
    """``--seed-models``: a comma list of the seed models' names (empty: none)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PUBLISHED_MODELS]
    if unknown:
        raise UserError(f"--seed-models {text}: no seed model {', '.join(unknown)} (there are "
                        f"{', '.join(PUBLISHED_MODELS)})")
    return names


def seed_spread(rows: list[dict]) -> float:
    """The mean over ``rows`` (ranking-report rows) of max - min of their per-seed test top-1."""
    return statistics.fmean(max(r["standalone_top1_per_seed"]) - min(r["standalone_top1_per_seed"]) for r in rows)


def compare_with_seed_models(best: dict, models: dict[str, dict], budget: float) -> dict:
    """The searched arch against the best seed model within ``budget`` (rows by model name), beside the spread over
    all of them."""
    within = {name: r for name, r in models.items() if r["flops"] <= budget}
    if not within:
        return {"verdict": "no seed model within the budget"}
    name, strongest = max(within.items(), key=lambda item: item[1]["standalone_top1"])
    spread = seed_spread([best, *models.values()])
    margin = best["standalone_top1"] - strongest["standalone_top1"]
    return {"best_seed_model": name, "best_seed_model_top1": strongest["standalone_top1"],
            "best_seed_model_gflops": strongest["flops"] / 1e9, "margin": margin, "seed_spread": spread,
            "fewer_flops": best["flops"] < strongest["flops"],
            "verdict": f"search {'beats' if margin > spread else 'does not beat'} the best seed model ({name})"}


def compare(best: dict, randoms: list[dict]) -> dict:
    """The rule: the searched arch's mean top-1 against the random archs' median, beside the seed-to-seed spread
    (the mean over all these archs of max - min across seeds). ``best`` and ``randoms`` are rows of the ranking
    report (``standalone_top1``, ``standalone_top1_per_seed``)."""
    median = statistics.median(r["standalone_top1"] for r in randoms)
    spread = seed_spread([best, *randoms])
    margin = best["standalone_top1"] - median
    return {"random_median_top1": median, "margin": margin, "seed_spread": spread,
            "beaten_randoms": sum(best["standalone_top1"] > r["standalone_top1"] for r in randoms),
            "verdict": f"search {'beats' if margin > spread else 'does not beat'} random"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument("--best", default="results/best.json", help="the search's best.json")
    p.add_argument("--supernet", default=None, help="default: the one named in --best")
    p.add_argument("--budget", default=None, help="default: the search's budget, from --best")
    p.add_argument("--random", type=int, default=5, help="random archs within the budget")
    p.add_argument("--rule", choices=("uniform", "band"), default="uniform",
                   help="uniform: uniform draws kept within the budget; band: check-ranking's draw of that many archs")
    p.add_argument("--seed-models", nargs="?", const=",".join(PUBLISHED_MODELS), default="", metavar="NAMES",
                   help="also train the seed papers' models as points of the space, and compare with them: all of "
                        f"them, or a comma list of {', '.join(PUBLISHED_MODELS)}")
    add_setting_flags(p, RankingConfig(), ("seeds", "cpus_per_trial"))
    p.add_argument("--seed", default="0", help="the random draw, or a comma list of draws (0,1,2): the verdict per "
                   "draw and over all their archs")
    add_setting_flags(p, TrainConfig(), STANDALONE_FLAGS)  # the stand-alone recipe, as check-ranking takes it
    p.add_argument("--out-dir", default="results/benchmarks")
    args = p.parse_args()
    draws = parse_draws(args.seed)
    model_names = parse_seed_models(args.seed_models)  # a wrong name is refused before the supernet loads

    info = read_json_file(args.best).get("search") or {}
    supernet = Path(args.supernet or info.get("supernet") or "")
    if not supernet.is_file():
        raise UserError(f"{args.best}: names no supernet checkpoint that exists; pass --supernet FILE")
    budget = parse_flops(args.budget) if args.budget else info.get("budget_flops")
    if not budget:
        raise UserError(f"{args.best}: records no budget; pass --budget")
    state = load_supernet_state(supernet)
    space = SearchSpace.from_dict(state["space"])
    best = space.validate(load_arch_file(args.best)[0], source=args.best)
    drawn = {d: drawn_archs(args.rule, space, budget, args.random, d, {best.key()}) for d in draws}
    randoms = list({a.key(): a for archs in drawn.values() for a in archs}.values())  # distinct, in draw order
    models = {name: space.validate(published_arch(PUBLISHED_MODELS[name]), source=name)
              for name in model_names}
    archs = list({a.key(): a for a in (best, *randoms, *models.values())}.values())
    how = ("uniform draws" if args.rule == "uniform" else
           f"archs by check-ranking's rule (FLOPs quantiles of {DRAWS} uniform draws)")
    rule = (f"the search's best ({args.best}) and {args.random} {how} within {format_flops(budget)} FLOPs, "
            + ", ".join(f"random.Random({d})" for d in draws)
            + (f"; the seed models {', '.join(models)}" if models else ""))
    print(rule, flush=True)
    cfg = settings_from_args(RankingConfig(), args, ("seeds", "cpus_per_trial"), budget_flops=budget, archs=len(archs),
                             seed=draws[0])
    train = settings_from_args(TrainConfig(), args, STANDALONE_FLAGS)
    stem = "search_vs_random-seed" + "-".join(map(str, draws)) + ("-models" if models else "")
    report = check_ranking(supernet, archs, cfg, train, rule=rule, report_dir=Path(args.out_dir) / stem,
                           state=state)

    rows = {r["arch"]: r for r in report["archs"]}
    best_row = rows[best.key()]
    per_draw = [{"draw": d, **compare(best_row, [rows[a.key()] for a in drawn[d]])} for d in draws] if randoms else []
    pooled = compare(best_row, [rows[a.key()] for a in randoms]) if randoms else {}
    keys_of = {d: {a.key() for a in drawn[d]} for d in draws}
    model_of = {a.key(): name for name, a in models.items()}
    table = [{"role": "searched" if r["arch"] == best.key() else model_of.get(r["arch"], "random"),
              "draws": "/".join(str(d) for d in draws if r["arch"] in keys_of[d]), "arch": r["arch"],
              "gflops": round(r["flops"] / 1e9, 3), "inherited_val_top1": r["inherited_top1"],
              "standalone_test_top1": r["standalone_top1"],
              "per_seed": "/".join(f"{v:.4f}" for v in r["standalone_top1_per_seed"])} for r in report["archs"]]
    role_width = max(len(row["role"]) for row in table)
    for row in table:
        print(f"{row['role']:<{role_width}} {row['draws']:<6} {row['arch']:<34} {row['gflops']:6.2f} GFLOPs  inherited "
              f"{row['inherited_val_top1']:.4f}  alone {row['standalone_test_top1']:.4f} ({row['per_seed']})")
    for name, c in [*((f"draw {c['draw']}", c) for c in per_draw),
                    *([(f"all {len(randoms)} random archs", pooled)] if len(draws) > 1 and randoms else [])]:
        print(f"{name}: searched {best_row['standalone_top1']:.4f} vs random median {c['random_median_top1']:.4f}: "
              f"margin {c['margin']:+.4f}, seed-to-seed spread {c['seed_spread']:.4f}, beats "
              f"{c['beaten_randoms']} of the random archs -> the {c['verdict']}")
    against_models = compare_with_seed_models(best_row, {n: rows[a.key()] for n, a in models.items()}, budget)
    if models:
        c = against_models
        print(f"seed models: searched {best_row['standalone_top1']:.4f} ({best_row['flops'] / 1e9:.2f} GFLOPs) vs "
              f"{c.get('best_seed_model')} {c.get('best_seed_model_top1', float('nan')):.4f} "
              f"({c.get('best_seed_model_gflops', float('nan')):.2f} GFLOPs): margin {c.get('margin', float('nan')):+.4f}, "
              f"seed-to-seed spread {c.get('seed_spread', float('nan')):.4f} -> the {c['verdict']}")
    summary = {"rule": rule, "supernet": str(supernet), "budget_flops": budget, "recipe": train.to_dict(),
               "seeds": args.seeds, "searched_top1": best_row["standalone_top1"], **pooled, "draws": per_draw,
               "seed_models": against_models if models else None, "kendall_tau_over_these": report["kendall_tau"]}
    write_rows(args.out_dir, stem, summary, table)
    return 0


if __name__ == "__main__":
    run(main)

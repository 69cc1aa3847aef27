"""Does the search beat random sampling? Hypervolume of the found front, TPE and NSGA-II vs random.

Every sampler gets the same trial budget, seeds, FLOPs budget, LUT latency and trained supernet. The
search runs as the in-process Optuna ask/tell loop of ``search_overhead.py`` (same evaluation as a Ray
trial, ``nas.search.trial.trial_metrics``; same rule as ``BudgetGuard``: over-budget suggestions are told to
Optuna as infeasible and never evaluated, repeats are told their known result), or with ``--runner ray``
through ``nas.search.driver.run_search`` itself. The hypervolume is ``nas.search.outputs.hypervolume`` of the Pareto
front (``nas.search.outputs.pareto_front``) of the feasible rows (``nas.search.outputs.feasible_rows``), with one
reference point for every run: top-1 0, FLOPs = the budget, latency = ``--latency-ref-ms`` (default:
1.1 x the largest LUT latency of any arch within the budget among ``--ref-samples`` seeded random archs
of the space, so it depends on nothing the samplers did).

    python -m benchmarks.search_quality --supernet results/benchmarks/search/supernet-mnist-e2/supernet.pt
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch

from benchmarks.bench_common import run
from benchmarks.search_overhead import (ROOT, command_line, default_supernet_path, load_inputs, machine, make_context,
                                        run_inprocess)
from nas.errors import UserError
from nas.runs.run import Run
from nas.search.outputs import feasible_rows, hypervolume, pareto_front
from nas.search.score import SCORES
from nas.search.trial import trial_metrics
from nas.settings import SearchConfig
from searchspace import DEPLOYMENT, Budget, SearchSpace, arch_cost, parse_flops, write_json_atomic


def latency_reference_ms(space: SearchSpace, table, budget_flops: float, samples: int, seed: int = 0) -> float:
    rng = random.Random(seed)
    worst = 0.0
    for _ in range(samples):
        arch = space.sample(rng)
        if arch_cost(arch, DEPLOYMENT).flops <= budget_flops:
            worst = max(worst, table.predict(arch) * 1e3)
    if worst == 0.0:
        raise UserError("no sampled arch is within the budget: pass --latency-ref-ms")
    return round(1.1 * worst, 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--supernet", metavar="PATH", default=None,
                   help="a trained supernet.pt (default: the one `launch.py search` finds for default settings)")
    p.add_argument("--samplers", default="tpe,nsga2,random", help="comma-separated (default: %(default)s)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated (default: %(default)s)")
    p.add_argument("--trials", type=int, default=32, help="evaluated trials per run (default 32)")
    p.add_argument("--budget", default="4.5GFLOPs")
    p.add_argument("--runner", choices=("inprocess", "ray"), default="inprocess",
                   help="inprocess: the ask/tell loop (default); ray: nas.search.run_search (slower)")
    p.add_argument("--max-concurrent", type=int, default=2, help="with --runner ray (default 2)")
    p.add_argument("--latency-ref-ms", type=float, default=None, help="hypervolume reference latency (ms)")
    p.add_argument("--ref-samples", type=int, default=20000,
                   help="random archs that set the default reference latency (default 20000)")
    p.add_argument("--cache-dir", default=str(ROOT / "results" / "latency"))
    p.add_argument("--work-dir", default=str(ROOT / "results" / "benchmarks" / "search"),
                   help="Ray run folders go under here (default: results/benchmarks/search)")
    p.add_argument("--out", default=None, help="JSON output (default: results/benchmarks/search_quality-n<trials>.json)")
    args = p.parse_args(argv)

    cmd = command_line()
    print(f"reproduce: {cmd}", flush=True)
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    budget = parse_flops(args.budget)
    supernet_path = Path(args.supernet) if args.supernet else default_supernet_path()
    state, table = load_inputs(supernet_path, Path(args.cache_dir))
    space = SearchSpace.from_dict(state["space"])
    ref_ms = args.latency_ref_ms or latency_reference_ms(space, table, budget, args.ref_samples)
    print(f"supernet {supernet_path}; latency table {table.device}; hypervolume reference: top-1 0, "
          f"FLOPs {budget / 1e9:g}G, latency {ref_ms:g} ms", flush=True)

    # One arch, one seed: the same top-1 whichever sampler proposes it (recalibration is seeded), so
    # the in-process runs share evaluations; the count of evaluated trials is unchanged.
    cache: dict[tuple[str, int], dict] = {}
    runs = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    start_all = time.perf_counter()
    for seed in seeds:
        for sampler in samplers:
            cfg = SearchConfig(budget_flops=budget, sampler=sampler, trials=args.trials, seed=seed, latency="lut",
                               max_concurrent=args.max_concurrent if args.runner == "ray" else 1)
            ctx = make_context(state, table, supernet_path, cfg)
            t0 = time.perf_counter()
            if args.runner == "inprocess":
                def evaluate(arch, ctx=ctx, seed=seed):
                    key = (arch.key(), seed)
                    if key not in cache:
                        cache[key] = trial_metrics(arch, ctx, torch.device("cpu"))
                    return cache[key]
                res = run_inprocess(ctx, evaluate=evaluate)
                rows = res["rows"]
            else:
                from nas.search.driver import run_search
                run_dir = Path(args.work_dir) / f"quality-{stamp}" / f"{sampler}-seed{seed}"
                run_dir.mkdir(parents=True, exist_ok=True)
                rows, finished = run_search(ctx, Run(run_dir))
                if not finished:
                    raise UserError(f"{run_dir}: the search did not finish")
            wall = time.perf_counter() - t0
            score = SCORES[cfg.score]
            feasible = feasible_rows(rows, Budget(flops=budget), score)
            front = pareto_front(feasible, score)
            hv = hypervolume(front, budget, ref_ms, score)
            best = max(feasible, key=lambda r: (r["top1"], -r["flops"]), default=None)
            run = {"sampler": sampler, "seed": seed, "hypervolume": hv, "wall_s": wall,
                   "evaluated": sum(r["state"] != "rejected_over_budget" for r in rows),
                   "rejected": sum(r["state"] == "rejected_over_budget" for r in rows),
                   "feasible": len(feasible), "front_size": len(front),
                   "best": None if best is None else {k: best[k] for k in ("arch", "top1", "flops", "latency_ms")},
                   "front": [{k: r[k] for k in ("arch", "top1", "flops", "latency_ms")} for r in front]}
            runs.append(run)
            b = run["best"]
            print(f"{sampler:<7} seed {seed}: HV {hv:.4f}, front {len(front):>2}, {run['evaluated']} evaluated, "
                  f"{run['rejected']} rejected, best top-1 {b['top1'] if b else float('nan'):.4f} "
                  f"({b['arch'] if b else '-'}, {b['flops'] / 1e9 if b else float('nan'):.2f} GFLOPs), {wall:.0f}s",
                  flush=True)

    summary = {}
    for sampler in samplers:
        mine = [r for r in runs if r["sampler"] == sampler]
        hvs = [r["hypervolume"] for r in mine]
        tops = [r["best"]["top1"] for r in mine if r["best"]]
        summary[sampler] = {"hv_mean": statistics.fmean(hvs), "hv_std": statistics.pstdev(hvs),
                            "hv_per_seed": {str(r["seed"]): r["hypervolume"] for r in mine},
                            "best_top1_mean": statistics.fmean(tops) if tops else None,
                            "best_top1_max": max(tops) if tops else None,
                            "best_top1_per_seed": {str(r["seed"]): r["best"]["top1"] if r["best"] else None
                                                   for r in mine}}
    seed_cols = " ".join(f"{'HV s' + str(s):>8}" for s in seeds)
    print(f"\n{'sampler':<8} {seed_cols} {'HV mean':>8} {'HV std':>7} {'best top-1 (per seed)':>24} {'vs random':>9}")
    rand = summary.get("random", {}).get("hv_mean")
    for sampler, s in summary.items():
        per = " ".join(f"{s['hv_per_seed'][str(x)]:>8.4f}" for x in seeds)
        tops = "/".join(f"{s['best_top1_per_seed'][str(x)]:.3f}" if s['best_top1_per_seed'][str(x)] is not None
                        else "-" for x in seeds)
        rel = f"{s['hv_mean'] / rand:>8.3f}x" if rand else f"{'-':>9}"
        print(f"{sampler:<8} {per} {s['hv_mean']:>8.4f} {s['hv_std']:>7.4f} {tops:>24} {rel}")
    total = time.perf_counter() - start_all
    print(f"\n{args.trials} trials per run, budget {args.budget}, runner {args.runner}; reference (top-1 0, "
          f"{budget / 1e9:g} GFLOPs, {ref_ms:g} ms); "
          + (f"{len(cache)} distinct (arch, seed) evaluations; " if args.runner == "inprocess" else "")
          + f"{total:.0f}s")

    out = Path(args.out) if args.out else ROOT / "results" / "benchmarks" / f"search_quality-n{args.trials}.json"
    write_json_atomic(out, {"benchmark": "search_quality", "command": cmd, "date": time.strftime("%Y-%m-%d %H:%M"),
                            "machine": machine(), "supernet": str(supernet_path), "latency_table": table.device,
                            "settings": {"samplers": samplers, "seeds": seeds, "trials": args.trials,
                                         "budget_flops": budget, "runner": args.runner,
                                         "max_concurrent": args.max_concurrent if args.runner == "ray" else 1},
                            "hypervolume_reference": {"top1": 0.0, "flops": budget, "latency_ms": ref_ms},
                            "wall_s": total, "runs": runs, "summary": summary})
    print(f"wrote {out}\nreproduce: {cmd}")
    return 0


if __name__ == "__main__":
    run(main)

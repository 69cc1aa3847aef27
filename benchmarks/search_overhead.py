"""Ray Tune overhead of the search: trials per minute of ``run_search`` vs an in-process Optuna loop.

Both sides evaluate archs with the same function (``nas.search.trial.trial_metrics``), the same TrialContext
(supernet weights, data, LUT latency, budget), the same Optuna sampler, seed and trial count, and the
search's own suggestion filters (``nas.search.guard``: an over-budget suggestion is told to Optuna as infeasible and
never evaluated; an arch already evaluated is told its known result and does not count as a trial). The
in-process loop runs one trial at a time with the torch threads a Ray trial gets (``--cpus-per-trial``),
each run in a fresh Python process (``inproc``), cold as each search's Ray trial actors are: a process
that has already run a search evaluates the same archs 20-30% faster (``warm`` runs the loop in this
process, to show that).
Ray runs the product's default concurrency (``--max-concurrent 2``, 1 CPU per trial) and, for a
single-worker view, concurrency 1. Runs alternate (in-process, Ray, ..., in-process again) so that
load drifting on a shared machine hits both sides. Ray's one-time startup (``ray.init``) is timed
separately and excluded from the Ray figures; everything after it (Tune setup, trial actors, workers
building the supernet and data) is included, as the in-process loop also builds the supernet and data
once per run.

    python -m benchmarks.search_overhead --supernet results/benchmarks/search/supernet-mnist-e2/supernet.pt
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench_common import ROOT, run
from nas.errors import UserError
from nas.runs import checkpoint as ckpt
from nas.runs.run import Run
from nas.search.constraints import BudgetConstraint
from nas.search.guard import Duplicates, OverBudget, StudyPort, complete_objectives, objective_names
from nas.search.outputs import trial_row
from nas.search.params import arch_from_params, param_name, stage_fields
from nas.search.samplers import make_optuna_sampler
from nas.search.trial import TrialContext, trial_metrics
from nas.settings import SearchConfig
from searchspace import DEPLOYMENT, SearchSpace, arch_cost, parse_flops, write_json_atomic

DIRECTIONS = ["maximize", "minimize", "minimize"]


# --- shared with search_quality.py ----------------------------------------------------------------

def default_supernet_path() -> Path:
    """Where ``python launch.py search`` looks by default: the run folder of ``launch.py supernet``'s defaults."""
    from nas.cli import supernet as supernet_cmd

    parser = argparse.ArgumentParser()
    supernet_cmd.add_arguments(parser)
    args = parser.parse_args([])
    return ROOT / supernet_cmd.job_from_args(args).default_run_dir() / "supernet.pt"


def load_inputs(supernet_path: Path, cache_dir: Path):
    """Supernet state and the deployment latency table, as ``launch.py search`` loads them (the table
    with the driver's default torch threads, before any trial changes them)."""
    from nas.latency.table import load_or_build_table

    if not supernet_path.exists():
        raise UserError(f"{supernet_path}: no supernet checkpoint (train one: python launch.py supernet "
                        f"[--epochs 2 --run-dir DIR], then pass --supernet DIR/supernet.pt)")
    state = ckpt.load(supernet_path)
    if "space" not in state or "settings" not in state:
        raise UserError(f"{supernet_path}: not a supernet checkpoint")
    table = load_or_build_table(SearchSpace.from_dict(state["space"]), DEPLOYMENT, device="cpu", batch_size=1,
                                cache_dir=cache_dir)
    return state, table


def make_context(state: dict, table, supernet_path: Path, config: SearchConfig) -> TrialContext:
    return TrialContext.from_supernet(state, config, latency_table=table, fingerprint=str(supernet_path.resolve()))


def optuna_distributions(space: SearchSpace) -> dict:
    """The same distributions, in the same order, as OptunaSearch converts ``tune_search_space`` to."""
    from optuna.distributions import CategoricalDistribution

    return {param_name(i, f): CategoricalDistribution(list(stage.choices(f))) for i, stage in enumerate(space.stages)
            for f in stage_fields(stage)}


def run_inprocess(ctx: TrialContext, *, evaluate: Callable[[Any], dict] | None = None,
                  max_skips: int = 500, progress: bool = False) -> dict:
    """The search as a plain Optuna ask/tell loop in this process, one trial at a time, through the search's own
    chain of suggestion filters (``nas.search.guard``: over the budget, duplicates). Returns rows (like
    ``run_search``'s: evaluated trials and rejections) and counts."""
    import optuna

    from nas.search import trial as search_mod

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = ctx.config
    space = ctx.space
    over_budget = OverBudget(BudgetConstraint(space, cfg.budget, ctx.latency_table if cfg.latency == "lut" else None))
    duplicates = Duplicates(before_tell=over_budget.before_tell)
    port = StudyPort(optuna.create_study(directions=DIRECTIONS,
                                         sampler=make_optuna_sampler(cfg.sampler, cfg.seed, cfg.trials)),
                     objective_names(cfg.score))
    dists = optuna_distributions(space)
    torch.set_num_threads(max(1, int(cfg.cpus_per_trial)))  # what evaluate_trial sets in a Ray trial
    device = torch.device("cpu")
    search_mod._WORKER_CACHE.clear()  # build the supernet and data once per run, as a fresh Ray actor does
    evaluate = evaluate or (lambda arch: trial_metrics(arch, ctx, device))
    rows: list[dict] = []
    asks = rejected = repeats = evaluated = 0
    eval_s = 0.0
    done_at: list[float] = []  # wall-clock time of each completed trial
    start = time.perf_counter()
    while evaluated < cfg.trials:
        for _ in range(max_skips):
            asks += 1
            probe = f"probe-{asks}"
            arch = arch_from_params(port.ask(probe, dists).params, space.num_stages)
            handled = over_budget.screen(probe, arch, port) or duplicates.screen(probe, arch, port)
            if handled is None:
                break
            if handled.reason == "rejected_over_budget":
                rejected += 1
                rows.append(trial_row(probe, arch, handled.reason, flops=handled.result["flops"],
                                      params=arch_cost(arch, DEPLOYMENT).params,
                                      latency_ms=handled.result["latency_ms"]))
            else:
                repeats += 1
        else:
            raise UserError(f"{max_skips} suggestions in a row were over the budget or already evaluated")
        duplicates.start(probe, arch)
        t0 = time.perf_counter()
        m = evaluate(arch)
        eval_s += time.perf_counter() - t0
        objectives = complete_objectives(m, error=False, names=port.names)
        duplicates.finish(probe, objectives)
        over_budget.before_tell(probe, m, port)
        port.tell(probe, objectives)
        evaluated += 1
        done_at.append(time.time())
        rows.append(trial_row(f"trial-{evaluated:03d}", arch, m["state"], top1=m["top1"], flops=m["flops"],
                              params=m["params"], latency_ms=m["latency_ms"]))
        if progress:
            rate = evaluated / (time.perf_counter() - start) * 60
            print(f"  [{evaluated:>3}/{cfg.trials}] {arch.key():<34} top1 {m['top1']:.4f} "
                  f"{m['flops'] / 1e9:5.2f} GFLOPs {m['latency_ms']:6.1f} ms ({rate:.1f} trials/min)", flush=True)
    return {"rows": rows, "wall_s": time.perf_counter() - start, "eval_s": eval_s, "asks": asks,
            "rejected": rejected, "repeats": repeats, "trials": evaluated, "done_at": done_at}


def command_line() -> str:
    """This benchmark's command as run from the checkout's root: ``python -m benchmarks.<name> ARGS``."""
    module = ".".join(Path(os.path.relpath(sys.argv[0], ROOT)).with_suffix("").parts)
    return " ".join(shlex.quote(a) for a in ["python", "-m", module, *sys.argv[1:]])


def with_checkout_on_path() -> dict[str, str]:
    """The environment for a child ``python -m benchmarks...`` run from any folder."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def machine() -> dict:
    from nas.latency.timing import _cpu_model

    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "load_avg_1m": os.getloadavg()[0]}


# --- the overhead benchmark -----------------------------------------------------------------------

def _ray_trial_times(run_dir: Path) -> tuple[list[float], list[float]]:
    """Seconds each Ray trial spent in its trainable (Tune's time_total_s) and when it reported
    (Tune's timestamp, whole seconds), from the experiment folder."""
    spent, done_at = [], []
    for path in (run_dir / "ray" / "tune").glob("*/result.json"):
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        if lines:
            last = json.loads(lines[-1])
            spent.append(float(last.get("time_total_s", float("nan"))))
            done_at.append(float(last.get("timestamp", float("nan"))))
    return spent, sorted(done_at)


def _timeline(start: float, done_at: list[float]) -> dict:
    """Seconds to the first completed trial, and the steady rate after it (trials/min between the
    first and the last completion): separates one-time startup from per-trial overhead."""
    if not done_at:
        return {"first_trial_s": None, "steady_trials_per_min": None}
    span = done_at[-1] - done_at[0]
    return {"first_trial_s": done_at[0] - start,
            "steady_trials_per_min": (len(done_at) - 1) / span * 60 if span > 0 else None}


def _inproc_run(state: dict, table, supernet_path: Path, base: dict, kind: str) -> dict:
    ctx = make_context(state, table, supernet_path, SearchConfig(**base, max_concurrent=1))
    t_start = time.time()
    res = run_inprocess(ctx, progress=True)
    return {"kind": kind, "max_concurrent": 1, "wall_s": res["wall_s"], "trials": res["trials"],
            "rejected": res["rejected"], "repeats": res["repeats"], "asks": res["asks"],
            "mean_trial_s": res["eval_s"] / max(1, res["trials"]), **_timeline(t_start, res["done_at"]),
            "best_top1": max((r["top1"] for r in res["rows"] if r["state"] == "completed"), default=None)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--supernet", metavar="PATH", default=None,
                   help="a trained supernet.pt (default: the one `launch.py search` finds for default settings)")
    p.add_argument("--trials", type=int, default=24, help="evaluated trials per run (default 24)")
    p.add_argument("--sampler", choices=("tpe", "nsga2", "random"), default="tpe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", default="4.5GFLOPs")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--order", default="inproc,ray2,ray1,inproc,ray2,ray1,inproc",
                   help="runs in this order: inproc (the loop in a fresh Python process, cold like a Ray trial "
                        "actor), warm (the loop in this process, warmed by earlier runs), rayN (run_search "
                        "with max_concurrent N), or rayNu (the same, results told in completion order) "
                        "(default: %(default)s)")
    p.add_argument("--target", type=float, default=0.7, help="target ratio Ray / in-process (default 0.7)")
    p.add_argument("--cache-dir", default=str(ROOT / "results" / "latency"))
    p.add_argument("--work-dir", default=str(ROOT / "results" / "benchmarks" / "search"),
                   help="Ray run folders go under here (default: results/benchmarks/search)")
    p.add_argument("--out", default=None, help="JSON output (default: results/benchmarks/search_overhead-<sampler>-"
                                               "n<trials>-seed<seed>.json)")
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)  # one cold in-process run, for the parent
    args = p.parse_args(argv)
    base = {"budget_flops": parse_flops(args.budget), "sampler": args.sampler, "trials": args.trials,
            "seed": args.seed, "latency": "lut", "cpus_per_trial": args.cpus_per_trial}
    if args.child_out:
        supernet_path = Path(args.supernet)
        state, table = load_inputs(supernet_path, Path(args.cache_dir))
        write_json_atomic(Path(args.child_out), _inproc_run(state, table, supernet_path, base, "inproc"))
        return 0

    cmd = command_line()
    print(f"reproduce: {cmd}", flush=True)
    supernet_path = Path(args.supernet) if args.supernet else default_supernet_path()
    state, table = load_inputs(supernet_path, Path(args.cache_dir))
    print(f"supernet {supernet_path}; latency table {table.device} ({len(table.entries)} entries)", flush=True)
    runs_spec = [s.strip() for s in args.order.split(",") if s.strip()]
    for s in runs_spec:
        if s not in ("inproc", "warm") and not (s.startswith("ray") and s[3:].rstrip("u").isdigit()
                                                and int(s[3:].rstrip("u")) >= 1):
            raise UserError(f"--order: unknown run {s!r} (inproc, warm, rayN, or rayNu: results told in completion "
                            f"order)")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = Path(args.work_dir) / f"overhead-{stamp}"
    ray_start_s = None
    runs = []
    for i, spec in enumerate(runs_spec):
        load_before = os.getloadavg()[0]
        if spec in ("inproc", "warm"):
            where = "a fresh Python process" if spec == "inproc" else "this process"
            print(f"\n[{i + 1}/{len(runs_spec)}] in-process Optuna loop in {where}, {args.trials} trials, "
                  f"{max(1, int(args.cpus_per_trial))} torch thread(s)", flush=True)
            if spec == "warm":
                run = _inproc_run(state, table, supernet_path, base, "warm")
            else:
                child_out = work / f"{i + 1:02d}-inproc.json"
                child_out.parent.mkdir(parents=True, exist_ok=True)
                subprocess.run([sys.executable, "-m", "benchmarks.search_overhead", "--supernet", str(supernet_path),
                                "--trials", str(args.trials), "--sampler", args.sampler, "--seed", str(args.seed),
                                "--budget", args.budget, "--cpus-per-trial", str(args.cpus_per_trial),
                                "--cache-dir", args.cache_dir, "--child-out", str(child_out)], check=True,
                               env=with_checkout_on_path())
                run = json.loads(child_out.read_text())
        else:
            conc, ordered = int(spec[3:].rstrip("u")), not spec.endswith("u")
            from nas.cluster.session import ensure_ray
            from nas.search.driver import run_search
            if ray_start_s is None:
                t0 = time.perf_counter()
                ensure_ray(None)
                ray_start_s = time.perf_counter() - t0
                print(f"Ray started in {ray_start_s:.1f}s (excluded from the Ray figures)", flush=True)
            ctx = make_context(state, table, supernet_path, SearchConfig(**base, max_concurrent=conc, ordered=ordered))
            run_dir = work / f"{i + 1:02d}-ray-c{conc}{'' if ordered else 'u'}"
            run_dir.mkdir(parents=True, exist_ok=True)
            print(f"\n[{i + 1}/{len(runs_spec)}] Ray Tune run_search, {args.trials} trials, max_concurrent {conc}, "
                  f"{args.cpus_per_trial:g} CPU per trial ({run_dir})", flush=True)
            t0, t_start = time.perf_counter(), time.time()
            rows, finished = run_search(ctx, Run(run_dir))
            wall = time.perf_counter() - t0
            if not finished:
                raise UserError("the Ray search did not finish")
            times, done_at = _ray_trial_times(run_dir)
            run = {"kind": f"ray-c{conc}{'' if ordered else '-completion-order'}", "max_concurrent": conc, "wall_s": wall,
                   "trials": sum(r["state"] != "rejected_over_budget" for r in rows),
                   "rejected": sum(r["state"] == "rejected_over_budget" for r in rows),
                   "errors": sum(r["state"] == "error" for r in rows),
                   "mean_trial_s": statistics.fmean(times) if times else float("nan"), "run_dir": str(run_dir),
                   **_timeline(t_start, done_at),
                   "best_top1": max((r["top1"] for r in rows if r["state"] == "completed"), default=None)}
        run["trials_per_min"] = run["trials"] / run["wall_s"] * 60
        run["load_avg_1m_before"] = load_before
        run["load_avg_1m_after"] = os.getloadavg()[0]
        runs.append(run)
        print(f"-> {run['kind']}: {run['trials']} trials in {run['wall_s']:.1f}s = {run['trials_per_min']:.2f} "
              f"trials/min (mean {run['mean_trial_s']:.2f}s in the evaluation per trial; load {load_before:.2f})",
              flush=True)

    def mean_rate(kind: str, key: str = "trials_per_min") -> float | None:
        rates = [r[key] for r in runs if r["kind"] == kind and r[key] is not None]
        return statistics.fmean(rates) if rates else None

    ref_kind = "inproc" if any(r["kind"] == "inproc" for r in runs) else "warm"
    inproc, inproc_steady = mean_rate(ref_kind), mean_rate(ref_kind, "steady_trials_per_min")
    summary = {}
    for kind in sorted({r["kind"] for r in runs if r["kind"] != ref_kind}):
        rate, steady = mean_rate(kind), mean_rate(kind, "steady_trials_per_min")
        summary[kind] = {"trials_per_min": rate, "ratio_vs_inproc": rate / inproc if inproc else None,
                         "steady_trials_per_min": steady,
                         "steady_ratio_vs_inproc": steady / inproc_steady if steady and inproc_steady else None,
                         "first_trial_s": mean_rate(kind, "first_trial_s")}

    print(f"\n{'#':>2} {'run':<8} {'trials':>6} {'wall s':>8} {'trials/min':>10} {'1st trial s':>11} "
          f"{'steady/min':>10} {'s/trial (eval)':>14} {'rejected':>8} {'load':>5}")
    def fmt(v, width, prec):
        return f"{v:>{width}.{prec}f}" if v is not None else f"{'-':>{width}}"
    for i, r in enumerate(runs):
        print(f"{i + 1:>2} {r['kind']:<8} {r['trials']:>6} {r['wall_s']:>8.1f} {r['trials_per_min']:>10.2f} "
              f"{fmt(r['first_trial_s'], 11, 1)} {fmt(r['steady_trials_per_min'], 10, 2)} "
              f"{r['mean_trial_s']:>14.2f} {r['rejected']:>8} {r['load_avg_1m_before']:>5.2f}")
    print(f"\nin-process ({ref_kind}) mean: {inproc:.2f} trials/min" if inproc else "\nno in-process run")
    if ray_start_s is not None:
        print(f"Ray startup (ray.init, excluded): {ray_start_s:.1f}s")
    for kind, s in summary.items():
        verdict = ""
        if s["ratio_vs_inproc"] is not None:
            verdict = "meets" if s["ratio_vs_inproc"] >= args.target else "MISSES"
            verdict = f"  ratio {s['ratio_vs_inproc']:.3f}x ({verdict} the {args.target:g}x target)"
        print(f"{kind} mean: {s['trials_per_min']:.2f} trials/min{verdict}")
        if s["steady_ratio_vs_inproc"] is not None:
            print(f"  after the first trial ({s['first_trial_s']:.1f}s to it): {s['steady_trials_per_min']:.2f} "
                  f"trials/min vs in-process {inproc_steady:.2f} = {s['steady_ratio_vs_inproc']:.3f}x")

    out = Path(args.out) if args.out else (ROOT / "results" / "benchmarks" /
                                           f"search_overhead-{args.sampler}-n{args.trials}-seed{args.seed}.json")
    write_json_atomic(out, {"benchmark": "search_overhead", "command": cmd, "date": time.strftime("%Y-%m-%d %H:%M"),
                            "machine": machine(), "supernet": str(supernet_path), "latency_table": table.device,
                            "settings": {**base, "order": runs_spec, "target": args.target},
                            "ray_startup_s": ray_start_s, "runs": runs, "inproc_trials_per_min": inproc,
                            "inproc_steady_trials_per_min": inproc_steady, "baseline": ref_kind,
                            "summary": summary})
    print(f"wrote {out}\nreproduce: {cmd}")
    return 0


if __name__ == "__main__":
    run(main)

"""Does the supernet rank archs as training from scratch would? Kendall's tau, inherited vs stand-alone top-1.

1. Trains (or loads, when ``supernet.pt`` of the same job is there) a supernet with the product's own
   ``train_supernet`` / ``SupernetJob`` (defaults = ``launch.py supernet``: 8 epochs, batch 64, lr 2e-3, spos).
2. Picks ``--archs`` archs deterministically from ``--arch-seed``: draws ``--pool`` uniform archs, keeps those
   under ``--max-mflops`` at the trained (SMALL-like) setting, groups them by dominant mixer (the mixer with the
   most blocks), and takes evenly spaced log-FLOPs quantiles (min .. max) of each group, so all three mixers
   and a wide cost range are covered.
3. Inherited top-1: ``evaluate_arch`` (extract, BatchNorm recalibration, held-out split) for each
   ``--recalib-batches`` value.
4. Stand-alone top-1: ``MixerNet.from_arch`` trained from scratch by the product's ``Trainer`` (no path sampler)
   with the same recipe (``--standalone-epochs``, default = ``--epochs``), evaluated on the held-out split.
   Cached per (recipe, arch) under the work dir, so supernet variants reuse them.
5. Kendall's tau-b and Spearman's rho (scipy.stats when importable, else an exact O(n^2) tau-b here).

    python benchmarks/supernet_ranking.py --epochs 8 --path-sampler spos --seed 0 --archs 12
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

from bench_common import write_rows
from nas.data.datasets import build_data
from nas.runs import checkpoint as ckpt
from nas.runs.layout import SUPERNET as FINAL
from nas.settings import DataConfig, ModelOptions, SupernetJob, TrainConfig
from nas.train.evaluate import evaluate, evaluate_arch
from nas.train.supernet import load_supernet, train_supernet
from nas.train.trainer import Trainer
from searchspace import DEPLOYMENT, Arch, SearchSpace, arch_cost, write_json_atomic
from supernet import SAMPLERS, MixerNet

SHORT = {"window_attention": "wa", "dwconv": "dw", "dynamic_dwconv": "dd"}


# --- statistics ---------------------------------------------------------------------------------

from nas.ranking.stats import kendall_tau as kendall_tau_b


def average_ranks(values: list[float]) -> list[float]:
    """Rank 1 = largest value; ties share their average rank."""
    order = sorted(range(len(values)), key=lambda i: -values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def correlations(x: list[float], y: list[float]) -> dict:
    try:
        from scipy import stats
        tau, tau_p = stats.kendalltau(x, y)  # tau-b
        rho, rho_p = stats.spearmanr(x, y)
        return {"kendall_tau_b": float(tau), "kendall_p": float(tau_p), "spearman_rho": float(rho),
                "spearman_p": float(rho_p), "method": "scipy.stats.kendalltau (tau-b) / spearmanr"}
    except ImportError:
        rx, ry = average_ranks(x), average_ranks(y)
        mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
        cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
        var = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
        return {"kendall_tau_b": kendall_tau_b(x, y), "spearman_rho": cov / var if var else float("nan"),
                "method": "exact tau-b / Spearman on average ranks (this script; scipy not importable)"}


# --- arch selection -----------------------------------------------------------------------------

def dominant_mixer(arch: Arch) -> str:
    blocks: Counter = Counter()
    for s in arch.stages:
        blocks[s.mixer] += s.depth
    top = max(blocks.values())
    # tie: the mixer of the deepest stage among the tied ones (stage order breaks further ties)
    tied = [s for s in sorted(arch.stages, key=lambda s: -s.depth) if blocks[s.mixer] == top]
    return tied[0].mixer


def select_archs(space: SearchSpace, settings, *, n: int, seed: int, pool: int, max_mflops: float) -> list[Arch]:
    rng = random.Random(seed)
    seen, groups = set(), {}
    for _ in range(pool):
        arch = space.sample(rng)
        if arch.key() in seen:
            continue
        seen.add(arch.key())
        flops = arch_cost(arch, settings).flops
        if max_mflops > 0 and flops > max_mflops * 1e6:
            continue
        groups.setdefault(dominant_mixer(arch), []).append((flops, arch.key(), arch))
    mixers = [m for m in space.stages[0].mixers if m in groups] + sorted(set(groups) - set(space.stages[0].mixers))
    per = [n // len(mixers) + (1 if i < n % len(mixers) else 0) for i in range(len(mixers))]
    chosen = []
    for mixer, k in zip(mixers, per):
        members = sorted(groups[mixer])
        logs = [math.log(f) for f, _, _ in members]
        lo, hi = logs[0], logs[-1]
        picked: list[int] = []
        for i in range(k):
            target = lo + (hi - lo) * (i / (k - 1) if k > 1 else 0.5)
            idx = min((j for j in range(len(members)) if j not in picked), key=lambda j: abs(logs[j] - target))
            picked.append(idx)
        chosen += [members[j][2] for j in sorted(picked)]
    return chosen


# --- the two accuracies -------------------------------------------------------------------------

def fingerprint(d: dict) -> str:
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


def compat(d: dict) -> dict:
    """``d`` without the fields added later at their no-op default (DataConfig.train_subset = None), so runs
    made before they existed keep their fingerprint (same as SupernetJob.fingerprint otherwise)."""
    d = json.loads(json.dumps(d))
    data = d.get("data", d)
    if data.get("train_subset", 0) is None:
        del data["train_subset"]
    return d


def get_supernet(job: SupernetJob, run_dir: Path, progress: bool) -> tuple[MixerNet, float | None]:
    final = run_dir / FINAL
    config = run_dir / "config.json"
    if final.exists() and config.exists() and compat(json.loads(config.read_text())["job"]) == compat(job.to_dict()):
        print(f"supernet: loading {final} (trained earlier with the same job)", flush=True)
        return load_supernet(final), None
    print(f"supernet: training in {run_dir}", flush=True)
    start = time.perf_counter()
    final = train_supernet(job, run_dir, resume=True, progress=progress)
    return load_supernet(final), time.perf_counter() - start


def standalone_top1(arch: Arch, data, settings, cfg: TrainConfig, root: Path, progress: bool) -> dict:
    run_dir = root / arch.key()
    done = run_dir / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    ckpt.seed_everything(cfg.seed)
    net = MixerNet.from_arch(arch, settings)
    start = time.perf_counter()
    history = Trainer(net, data, cfg, run_dir, progress=progress).fit(resume=True)
    result = {"arch": arch.key(), "top1": evaluate(net, data.val, batch_size=cfg.eval_batch_size)["top1"],
              "best_epoch_top1": max(h["val_top1"] for h in history),
              "train_s": time.perf_counter() - start, "epochs": cfg.epochs}
    write_json_atomic(done, result)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8, help="supernet epochs (default 8, as launch.py supernet)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--path-sampler", choices=SAMPLERS, default="spos")
    p.add_argument("--seed", type=int, default=0, help="training seed (supernet and stand-alone)")
    p.add_argument("--recalib-batches", default="8",
                   help="comma list of BatchNorm recalibration batch counts for inherited top-1; the first is the "
                        "headline (default 8, the product default)")
    p.add_argument("--archs", type=int, default=12)
    p.add_argument("--arch-seed", type=int, default=0)
    p.add_argument("--pool", type=int, default=4000, help="uniform draws to select from")
    p.add_argument("--max-mflops", type=float, default=40.0,
                   help="only archs under this many MFLOPs at the trained setting (keeps stand-alone training "
                        "affordable on a CPU; 0: no cap)")
    p.add_argument("--standalone-epochs", type=int, default=None, help="default: --epochs")
    p.add_argument("--standalone-seeds", default=None,
                   help="comma list of stand-alone training seeds (default: --seed); with several, stand-alone top-1 "
                        "is their mean and the tau between seeds (the ground truth's own noise) is reported")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--work-dir", default=str(ROOT / "results" / "benchmarks" / "supernet_ranking"))
    p.add_argument("--out-dir", default=str(ROOT / "results" / "benchmarks"))
    p.add_argument("--tag", default="", help="suffix of the output file names")
    p.add_argument("--progress", action="store_true", help="tqdm bars too (per-epoch lines are always printed)")
    p.add_argument("--only", choices=("all", "supernet", "standalone"), default="all",
                   help="supernet: train/load the supernet only; standalone: fill the stand-alone cache only "
                        "(two processes can then run side by side; a final plain run reads both)")
    p.add_argument("--reverse", action="store_true", help="with --only standalone: the archs in reverse order")
    args = p.parse_args(argv)

    command = "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0]))] + (argv or sys.argv[1:]))
    print(f"command: {command}", flush=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.progress:  # keep the per-epoch lines (Trainer progress=True), drop the step bars
        from tqdm import tqdm as _tqdm

        from nas.train import trainer as engine

        def quiet(*a, **k):
            k["disable"] = True
            return _tqdm(*a, **k)
        engine.tqdm = quiet
    recalibs = [int(v) for v in args.recalib_batches.split(",")]
    started = time.perf_counter()

    data_cfg = DataConfig()
    data = build_data(data_cfg)
    space = SearchSpace.default()
    model = ModelOptions()
    settings = model.settings(data)
    train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                        recalib_batches=recalibs[0])
    job = SupernetJob(data=data_cfg, train=train, model=model, path_sampler=args.path_sampler,
                      space=space)
    work = Path(args.work_dir)
    supernet, supernet_s = None, None
    if args.only != "standalone":
        run_dir = work / "supernet" / f"{args.path_sampler}-{fingerprint(compat(job.to_dict()))}"
        supernet, supernet_s = get_supernet(job, run_dir, True)
        if args.only == "supernet":
            return 0

    archs = select_archs(space, settings, n=args.archs, seed=args.arch_seed, pool=args.pool,
                         max_mflops=args.max_mflops)
    sa_seeds = [int(v) for v in (args.standalone_seeds or str(args.seed)).split(",")]
    sa_cfgs, sa_roots = {}, {}
    for seed in sa_seeds:
        sa_cfgs[seed] = TrainConfig(epochs=args.standalone_epochs or args.epochs, batch_size=args.batch_size,
                                    lr=args.lr, seed=seed)
        recipe = {"data": compat(data_cfg.to_dict()), "model": model.__dict__, "train": sa_cfgs[seed].to_dict()}
        sa_roots[seed] = work / "standalone" / fingerprint(recipe)
    sa_cfg = sa_cfgs[sa_seeds[0]]
    print(f"{len(archs)} archs (arch seed {args.arch_seed}, <= {args.max_mflops:g} MFLOPs at {settings.img_size}px "
          f"C={settings.embed_dim}); stand-alone recipe {sa_cfg.epochs} epochs, training seeds {sa_seeds} in "
          f"{', '.join(str(r) for r in sa_roots.values())}", flush=True)

    if args.only == "standalone":
        order = [(i, arch, seed) for seed in sa_seeds for i, arch in enumerate(archs, 1)]
        for i, arch, seed in (order[::-1] if args.reverse else order):
            sa_root = sa_roots[seed]
            lock = sa_root / f".{arch.key()}.lock"
            if not (sa_root / arch.key() / "result.json").exists():
                try:  # another --only standalone process may be training this one
                    lock.parent.mkdir(parents=True, exist_ok=True)
                    os.close(os.open(lock, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    print(f"  [{i:>2}/{len(archs)}] {arch.key():<34} skipped: {lock} exists", flush=True)
                    continue
            sa = standalone_top1(arch, data, settings, sa_cfgs[seed], sa_root, True)
            lock.unlink(missing_ok=True)
            print(f"  [{i:>2}/{len(archs)}] {arch.key():<34} seed {seed} stand-alone {sa['top1']:.4f} "
                  f"({sa['train_s']:.0f}s)", flush=True)
        return 0
    rows = []
    for i, arch in enumerate(archs, 1):
        inherited = {r: evaluate_arch(supernet, arch, data, recalib_batches=r, seed=args.seed)["top1"]
                     for r in recalibs}
        sas = {seed: standalone_top1(arch, data, settings, sa_cfgs[seed], sa_roots[seed], True) for seed in sa_seeds}
        row = {"arch": arch.key(), "mixer": SHORT.get(dominant_mixer(arch), dominant_mixer(arch)),
               "mflops_trained": arch_cost(arch, settings).flops / 1e6,
               "gflops_deployment": arch_cost(arch, DEPLOYMENT).flops / 1e9,
               "inherited_top1": inherited[recalibs[0]],
               "standalone_top1": sum(v["top1"] for v in sas.values()) / len(sas),
               "standalone_train_s": sum(v["train_s"] for v in sas.values()),
               **{f"inherited_top1_recalib{r}": v for r, v in inherited.items()},
               **({f"standalone_top1_seed{seed}": v["top1"] for seed, v in sas.items()} if len(sas) > 1 else {})}
        rows.append(row)
        print(f"  [{i:>2}/{len(archs)}] {row['arch']:<34} inherited {row['inherited_top1']:.4f} "
              f"stand-alone {row['standalone_top1']:.4f} ({row['standalone_train_s']:.0f}s)", flush=True)

    inh = [r["inherited_top1"] for r in rows]
    sa = [r["standalone_top1"] for r in rows]
    for r, ri, rs in zip(rows, average_ranks(inh), average_ranks(sa)):
        r["rank_inherited"], r["rank_standalone"] = ri, rs
    stats = correlations(inh, sa)
    per_recalib = {r: correlations([row[f"inherited_top1_recalib{r}"] for row in rows], sa)["kendall_tau_b"]
                   for r in recalibs}
    stats_flops = correlations([-r["gflops_deployment"] for r in rows], sa)  # does cost alone rank as well?
    seed_taus = {}
    for a in range(len(sa_seeds)):
        for b in range(a + 1, len(sa_seeds)):
            sa_a, sa_b = sa_seeds[a], sa_seeds[b]
            seed_taus[f"{sa_a}-{sa_b}"] = correlations([r[f"standalone_top1_seed{sa_a}"] for r in rows],
                                                       [r[f"standalone_top1_seed{sa_b}"] for r in rows])["kendall_tau_b"]

    header = (f"{'arch':<34} {'mix':>3} {'MFLOPs':>7} {'GFLOPs@dep':>10} {'inherited':>9} {'stand-alone':>11} "
              f"{'rk inh':>6} {'rk sa':>6}")
    print(header)
    print("-" * len(header))
    for r in sorted(rows, key=lambda r: r["rank_standalone"]):
        print(f"{r['arch']:<34} {r['mixer']:>3} {r['mflops_trained']:>7.1f} {r['gflops_deployment']:>10.2f} "
              f"{r['inherited_top1']:>9.4f} {r['standalone_top1']:>11.4f} {r['rank_inherited']:>6.1f} "
              f"{r['rank_standalone']:>6.1f}")
    print("-" * len(header))
    print(f"Kendall tau-b {stats['kendall_tau_b']:.3f}, Spearman rho {stats['spearman_rho']:.3f} over {len(rows)} "
          f"archs ({stats['method']}); supernet {args.path_sampler}, {args.epochs} epochs, recalib {recalibs[0]} "
          f"batches; stand-alone {sa_cfg.epochs} epochs")
    if len(recalibs) > 1:
        print("tau by recalibration batches: " + ", ".join(f"{r}: {t:.3f}" for r, t in per_recalib.items()))
    if seed_taus:
        print("stand-alone seed vs seed tau (noise ceiling of the ground truth): "
              + ", ".join(f"{k}: {v:.3f}" for k, v in seed_taus.items())
              + "; per-seed tau of inherited vs stand-alone: " + ", ".join(
                  f"seed {sd}: {correlations(inh, [r[f'standalone_top1_seed{sd}'] for r in rows])['kendall_tau_b']:.3f}"
                  for sd in sa_seeds))
    print(f"for reference, tau of -FLOPs vs stand-alone top-1: {stats_flops['kendall_tau_b']:.3f}; "
          f"stand-alone top-1 range {min(sa):.4f}..{max(sa):.4f}, inherited {min(inh):.4f}..{max(inh):.4f}")

    summary = {"command": command, "torch": torch.__version__, "threads": torch.get_num_threads(),
               "supernet_job": job.to_dict(), "supernet_fingerprint": fingerprint(compat(job.to_dict())),
               "supernet_train_s": supernet_s, "standalone_train": sa_cfg.to_dict(), "standalone_seeds": sa_seeds,
               "tau_between_standalone_seeds": seed_taus,
               "arch_selection": {"archs": args.archs, "arch_seed": args.arch_seed, "pool": args.pool,
                                  "max_mflops": args.max_mflops},
               "recalib_batches": recalibs, "tau_by_recalib": per_recalib, **stats,
               "kendall_tau_b_neg_flops": stats_flops["kendall_tau_b"],
               "wall_s": time.perf_counter() - started, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    seeds = "" if sa_seeds == [args.seed] else "-saseeds" + "_".join(map(str, sa_seeds))
    stem = f"supernet_ranking-{args.path_sampler}-e{args.epochs}-sa{sa_cfg.epochs}-seed{args.seed}{seeds}{args.tag}"
    path = write_rows(args.out_dir, stem, summary, rows)
    print(f"wrote {path}.json and .csv ({summary['wall_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

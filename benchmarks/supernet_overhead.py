"""The price of weight sharing per training step: supernet on a sampled path vs the extracted standalone network.

For ``--paths`` seeded uniform paths of the space: the supernet (``set_active(arch)``) and
``supernet.extract(arch)`` (train mode), each with its own AdamW from timm's factory (as the Trainer), run the
product's training step on the same batch: zero_grad(set_to_none) -> forward -> label-smoothing loss -> backward
-> gradient-norm clip 5.0 -> AdamW step. Interleaved A, B, A, B ... after ``--warmup`` pairs; the median of
``--repeats`` per side, ratio = supernet / standalone per path; also the median time of each phase (forward,
backward, clip, optimizer) summed over the paths, to show where any extra time goes. ``--profile K`` adds a
torch.profiler comparison (self CPU time per op, supernet minus standalone) over the K paths with the largest ratio.

    python -m benchmarks.supernet_overhead --paths 20 --seed 0 --batch 64 --setting small
"""
from __future__ import annotations

import argparse
import os
import random
import shlex
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from timm.utils import dispatch_clip_grad

from benchmarks.bench_common import ROOT
from searchspace import DEPLOYMENT, SMALL, SearchSpace, arch_cost, write_json_atomic
from supernet import MixerNet, num_params

SETTINGS = {"small": SMALL, "deployment": DEPLOYMENT}
PHASES = ("forward", "backward", "clip", "optimizer")


class Side:
    """One model and its optimizer; ``step`` runs the product's training step and returns phase times."""

    def __init__(self, model: torch.nn.Module, lr: float, weight_decay: float, clip: float | None) -> None:
        self.model = model.train()
        self.opt = create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=weight_decay)
        self.loss_fn = LabelSmoothingCrossEntropy(0.1)
        self.clip = clip

    def step(self, x: torch.Tensor, y: torch.Tensor, before=None) -> dict[str, float]:
        t0 = time.perf_counter()
        if before is not None:
            before()  # the supernet's set_active: part of its step
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if self.clip:
            dispatch_clip_grad(self.model.parameters(), self.clip)
        t3 = time.perf_counter()
        self.opt.step()
        t4 = time.perf_counter()
        return {"forward": t1 - t0, "backward": t2 - t1, "clip": t3 - t2, "optimizer": t4 - t3, "total": t4 - t0}


def median_phases(samples: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}


def profile_compare(sup: Side, sub: Side, arch, x, y, steps: int) -> dict[str, float]:
    """Self CPU time per op name (microseconds per step), supernet minus standalone."""
    from torch.profiler import ProfilerActivity, profile
    totals = {}
    for name, side, before in (("supernet", sup, lambda: sup.model.set_active(arch)), ("standalone", sub, None)):
        side.step(x, y, before)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                side.step(x, y, before)
        totals[name] = {e.key: e.self_cpu_time_total / steps for e in prof.key_averages()}
    keys = set(totals["supernet"]) | set(totals["standalone"])
    return {k: totals["supernet"].get(k, 0.0) - totals["standalone"].get(k, 0.0) for k in keys}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paths", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64, as launch.py supernet)")
    p.add_argument("--setting", choices=SETTINGS, default="small",
                   help="small: 32px, 1 channel, C=16, 10 classes (the MNIST training setting); deployment: "
                        "224px, 3 channels, C=96, 1000 classes (lower --batch on a CPU)")
    p.add_argument("--warmup", type=int, default=2, help="untimed A/B pairs per path")
    p.add_argument("--repeats", type=int, default=5, help="timed A/B pairs per path")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--clip-grad", type=float, default=5.0, help="0: no clipping")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--profile", type=int, default=0, metavar="K",
                   help="torch.profiler comparison over the K paths with the largest ratio (0: off)")
    p.add_argument("--space", metavar="NAME|FILE", default=None, help="a built-in space name or a space file")
    p.add_argument("--out-dir", default=str(ROOT / "results" / "benchmarks"))
    args = p.parse_args(argv)

    command = "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0]))] + (argv or sys.argv[1:]))
    print(f"command: {command}", flush=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    space = SearchSpace.load(args.space)
    settings = SETTINGS[args.setting]
    supernet = MixerNet(space, settings)
    sup = Side(supernet, args.lr, args.weight_decay, args.clip_grad or None)
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, settings.in_chans, settings.img_size, settings.img_size, generator=g)
    y = torch.randint(0, settings.num_classes, (args.batch,), generator=g)
    rng = random.Random(args.seed)
    archs = [space.sample(rng) for _ in range(args.paths)]
    print(f"setting {args.setting} ({settings.img_size}px, C={settings.embed_dim}), batch {args.batch}, "
          f"{torch.get_num_threads()} threads, {len(archs)} paths (seed {args.seed}), {args.warmup} warm-up + "
          f"{args.repeats} timed A/B pairs each; supernet {num_params(supernet) / 1e6:.2f}M params", flush=True)
    load_start = os.getloadavg()[0]

    header = f"{'arch':<34} {'MFLOPs':>8} {'params':>7} {'supernet ms':>11} {'standalone ms':>13} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    rows, phase_sup, phase_sub = [], defaultdict(float), defaultdict(float)
    for arch in archs:
        set_active = (lambda a=arch: supernet.set_active(a))
        set_active()
        sub = Side(supernet.extract(arch), args.lr, args.weight_decay, args.clip_grad or None)
        a_samples, b_samples = [], []
        for i in range(args.warmup + args.repeats):
            a = sup.step(x, y, set_active)
            b = sub.step(x, y)
            if i >= args.warmup:
                a_samples.append(a)
                b_samples.append(b)
        ma, mb = median_phases(a_samples), median_phases(b_samples)
        for k in PHASES:
            phase_sup[k] += ma[k]
            phase_sub[k] += mb[k]
        row = {"arch": arch.key(), "mflops": arch_cost(arch, settings).flops / 1e6,
               "params_m": num_params(sub.model) / 1e6, "supernet_ms": ma["total"] * 1e3,
               "standalone_ms": mb["total"] * 1e3, "ratio": ma["total"] / mb["total"],
               "supernet_phases_ms": {k: ma[k] * 1e3 for k in PHASES},
               "standalone_phases_ms": {k: mb[k] * 1e3 for k in PHASES}}
        rows.append(row)
        print(f"{row['arch']:<34} {row['mflops']:>8.1f} {row['params_m']:>6.3f}M {row['supernet_ms']:>11.1f} "
              f"{row['standalone_ms']:>13.1f} {row['ratio']:>6.3f}", flush=True)
        del sub
    load_end = os.getloadavg()[0]

    ratios = [r["ratio"] for r in rows]
    total_ratio = sum(r["supernet_ms"] for r in rows) / sum(r["standalone_ms"] for r in rows)
    print("-" * len(header))
    print(f"ratio supernet / standalone step: median {statistics.median(ratios):.3f}, max {max(ratios):.3f}, "
          f"min {min(ratios):.3f}; time-weighted (sum over paths) {total_ratio:.3f}")
    print("per phase, medians summed over the paths (ms): " + ", ".join(
        f"{k} {phase_sup[k] * 1e3:.0f} vs {phase_sub[k] * 1e3:.0f} ({phase_sup[k] / phase_sub[k]:.2f}x)"
        for k in PHASES))
    if max(load_start, load_end) > torch.get_num_threads() + 0.75:
        print(f"note: 1-minute load average {load_start:.2f} -> {load_end:.2f} ({os.cpu_count()} CPUs): other "
              f"processes shared the CPU; the interleaving keeps the ratio fair, absolute times are noisy")

    profile = None
    if args.profile:
        worst = sorted(range(len(rows)), key=lambda i: -ratios[i])[:args.profile]
        diff: dict[str, float] = defaultdict(float)
        for i in worst:
            supernet.set_active(archs[i])
            sub = Side(supernet.extract(archs[i]), args.lr, args.weight_decay, args.clip_grad or None)
            for k, v in profile_compare(sup, sub, archs[i], x, y, steps=max(args.repeats, 3)).items():
                diff[k] += v / len(worst)
        top = sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:15]
        print(f"profiler, self CPU time per step, supernet minus standalone, mean over the {len(worst)} paths of "
              f"largest ratio (us):")
        for k, v in top:
            print(f"  {k:<45} {v:>+10.0f}")
        profile = {"paths": [rows[i]["arch"] for i in worst], "self_cpu_us_diff_top": dict(top)}

    summary = {"command": command, "torch": torch.__version__, "threads": torch.get_num_threads(),
               "setting": args.setting, "batch": args.batch, "paths": len(rows), "seed": args.seed,
               "warmup": args.warmup, "repeats": args.repeats, "clip_grad": args.clip_grad,
               "median_ratio": statistics.median(ratios), "max_ratio": max(ratios), "min_ratio": min(ratios),
               "time_weighted_ratio": total_ratio,
               "phases_ms_supernet": {k: v * 1e3 for k, v in phase_sup.items()},
               "phases_ms_standalone": {k: v * 1e3 for k, v in phase_sub.items()},
               "load_avg_1min": [round(load_start, 2), round(load_end, 2)], "cpu_count": os.cpu_count(),
               "profile": profile, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = Path(args.out_dir) / f"supernet_overhead-{args.setting}-b{args.batch}-t{torch.get_num_threads()}-seed{args.seed}.json"
    write_json_atomic(out, {"summary": summary, "rows": rows})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

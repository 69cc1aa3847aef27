"""Latency lookup table vs whole-network measurement at the deployment setting.

Builds (or loads from results/latency) the table of measured component latencies at DEPLOYMENT
(224x224x3, C = 96, 1000 classes) on a device (CPU by default), then measures seeded random archs of the
space as whole standalone networks and compares. Both sides are timed the same way: eagerly on CPU, by
replaying a captured CUDA graph on CUDA (``nas.latency.timing.timing_method``; the output records it). Writes the
rows to results/benchmarks/.

The reference, in the same run: the measurement against itself. Every arch is measured twice, in two passes
over all of them, and the table's error (against the first pass) is reported beside the second pass's
difference from the first, the noise floor no prediction checked against one measurement can go under.

    python -m benchmarks.latency_table --archs 20 --seed 0 --batch 1 --max-gflops 12
    python -m benchmarks.latency_table --device cuda --batch 64 --max-gflops 0
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

import torch

from benchmarks.bench_common import ROOT, write_rows
from nas.latency.table import load_or_build_table, table_path
from nas.latency.timing import device_tag, measure_latency, timing_method
from searchspace import DEPLOYMENT, SearchSpace, arch_cost
from supernet import MixerNet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=20, help="random archs to measure (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--max-gflops", type=float, default=12.0,
                        help="measure only archs under this many GFLOPs (analytic); 0 = no cap (default 12)")
    parser.add_argument("--space", metavar="NAME|FILE", default=None, help="a built-in space name or a search-space file (default: default)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--cache-dir", default=str(ROOT / "results" / "latency"))
    parser.add_argument("--out-dir", default=str(ROOT / "results" / "benchmarks"))
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    space = SearchSpace.load(args.space)
    settings = DEPLOYMENT
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device is visible", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    tag, method = device_tag(device, args.batch), timing_method(device)
    path = table_path(space, settings, device=device, batch_size=args.batch, cache_dir=args.cache_dir)
    print(f"device {tag}, timing method {method}, torch {torch.__version__}, table {path}", flush=True)

    started = time.perf_counter()
    table = load_or_build_table(space, settings, device=device, batch_size=args.batch, cache_dir=args.cache_dir)
    build_s = time.perf_counter() - started
    print(f"table: {len(table.entries)} entries, fitted whole-network scale {table.scale:.3f}, "
          f"built in {table.meta.get('build_seconds', float('nan')):.1f} s (this run spent {build_s:.1f} s on it)",
          flush=True)

    # Seeded archs under the FLOP cap, excluding the table's calibration archs (they fitted the
    # scale, so comparing on them would flatter the table).
    calibration = {row["arch"] for row in table.meta.get("calibration", [])}
    cap = args.max_gflops * 1e9 if args.max_gflops > 0 else float("inf")
    rng, archs, seen, draws = random.Random(args.seed), [], set(), 0
    while len(archs) < args.archs and draws < 100_000:
        arch, draws = space.sample(rng), draws + 1
        if arch.key() in seen or arch.key() in calibration or arch_cost(arch, settings).flops > cap:
            continue
        seen.add(arch.key())
        archs.append(arch)
    cap_text = f"under {args.max_gflops:g} GFLOPs (analytic), " if args.max_gflops > 0 else ""
    print(f"measuring {len(archs)} random archs {cap_text}seed {args.seed}, batch {args.batch}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} runs after {args.warmup} warm-up "
          f"(first {draws} draws; calibration archs excluded)", flush=True)

    def measure(arch) -> float:
        net = MixerNet.from_arch(arch, settings)
        return measure_latency(net, settings, batch_size=args.batch, warmup=args.warmup, repeats=args.repeats,
                               device=device)

    load_start = os.getloadavg()[0]
    rows = []
    header = f"{'arch':<36} {'GFLOPs':>7} {'pred ms':>9} {'meas ms':>9} {'err %':>7} {'unscaled %':>10}"
    print(header)
    print("-" * len(header))
    for arch in archs:
        measured = measure(arch)
        predicted = table.predict(arch)
        modules = table.modules_sum(arch)
        row = {"arch": arch.key(), "gflops": arch_cost(arch, settings).flops / 1e9,
               "predicted_ms": predicted * 1e3, "measured_ms": measured * 1e3,
               "error_pct": 100 * (predicted - measured) / measured,
               "error_unscaled_pct": 100 * (modules - measured) / measured}
        rows.append(row)
        print(f"{row['arch']:<36} {row['gflops']:>7.2f} {row['predicted_ms']:>9.2f} {row['measured_ms']:>9.2f} "
              f"{row['error_pct']:>+7.1f} {row['error_unscaled_pct']:>+10.1f}", flush=True)

    print("-" * len(header))
    print("second pass (the reference: each arch measured again, after all the others)", flush=True)
    for arch, row in zip(archs, rows):
        row["remeasured_ms"] = measure(arch) * 1e3
        row["remeasure_diff_pct"] = 100 * (row["remeasured_ms"] - row["measured_ms"]) / row["measured_ms"]

    load_end = os.getloadavg()[0]
    errors = [abs(r["error_pct"]) for r in rows]
    raw = [abs(r["error_unscaled_pct"]) for r in rows]
    floor = [abs(r["remeasure_diff_pct"]) for r in rows]
    summary = {
        "device": tag, "method": method, "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": args.batch,
        "seed": args.seed, "archs": len(rows), "max_gflops": args.max_gflops or None,
        "load_avg_1min": [round(load_start, 2), round(load_end, 2)], "cpu_count": os.cpu_count(),
        "scale": table.scale, "table_entries": len(table.entries),
        "median_abs_error_pct": statistics.median(errors), "max_abs_error_pct": max(errors),
        "mean_error_pct": statistics.mean(r["error_pct"] for r in rows),
        "median_abs_remeasure_diff_pct": statistics.median(floor), "max_abs_remeasure_diff_pct": max(floor),
        "median_abs_error_unscaled_pct": statistics.median(raw), "max_abs_error_unscaled_pct": max(raw),
        "mean_error_unscaled_pct": statistics.mean(r["error_unscaled_pct"] for r in rows),
    }
    print(f"median |error| {summary['median_abs_error_pct']:.1f}%, max |error| {summary['max_abs_error_pct']:.1f}%, "
          f"mean signed error {summary['mean_error_pct']:+.1f}% over {len(rows)} archs {cap_text.rstrip(', ')}")
    print(f"the same archs measured again: median |difference| {summary['median_abs_remeasure_diff_pct']:.1f}%, "
          f"max {summary['max_abs_remeasure_diff_pct']:.1f}%; median |error| of the table / of a second measurement: "
          f"{summary['median_abs_error_pct'] / max(summary['median_abs_remeasure_diff_pct'], 1e-9):.2f}x")
    print(f"unscaled (plain sum of components, without the fitted scale {table.scale:.3f}): median |error| "
          f"{summary['median_abs_error_unscaled_pct']:.1f}%, max {summary['max_abs_error_unscaled_pct']:.1f}%, "
          f"mean signed {summary['mean_error_unscaled_pct']:+.1f}%")

    if max(load_start, load_end) > torch.get_num_threads() + 0.75:
        # The load average counts this benchmark's own threads too; more than those means others ran.
        print(f"note: 1-minute load average {load_start:.2f} -> {load_end:.2f} ({os.cpu_count()} CPUs, "
              f"{torch.get_num_threads()} threads here): other processes probably shared the CPU; timings are noisy")
    write_rows(args.out_dir, f"latency_table-{tag}-seed{args.seed}", summary, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

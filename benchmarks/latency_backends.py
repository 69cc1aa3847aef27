"""Latency tables of both backends side by side on this CPU: each table's error against whole networks run in its
own backend (median and 90th percentile, beside the noise floor of measuring the same network twice), and how the
two backends' latencies compare for the same archs.

Rule: the archs are ``check-ranking``'s draw (evenly spaced FLOPs quantiles of the distinct archs within
``--budget`` among 4,000 uniform draws of the space, ``--seed``), at the deployment setting (224 px, batch 1). Both
tables are built fresh here, with the same threads, warm-up and repeats, the torch one first; then each arch is
timed in both backends, alternating which goes first from arch to arch.

    python -m benchmarks.latency_backends --archs 10 --threads 2 --out results/benchmarks
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from benchmarks.bench_common import run, write_rows
from nas.cli.flags import HelpFormatter
from nas.errors import UserError
from nas.settings import DEFAULT_BUDGET, DRAWS, LATENCY_BACKENDS


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--space", default="default", help="a built-in space or a space file")
    p.add_argument("--archs", type=int, default=10, help="archs checked")
    p.add_argument("--budget", default=DEFAULT_BUDGET, help="the band the archs are drawn from")
    p.add_argument("--seed", type=int, default=0, help="seed of the arch draw")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of both backends")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds before the timed ones")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds")
    p.add_argument("--out", default="results/benchmarks", help="folder for the tables and the report")
    args = p.parse_args()
    if args.archs < 2 or args.threads < 1 or args.repeats < 1:
        raise UserError("--archs must be at least 2, --threads and --repeats at least 1")
    import torch

    from nas.latency.check import measure_archs, summarize
    from nas.latency.table import LatencyTable
    from nas.ranking.arch_sets import band_archs
    from searchspace import DEPLOYMENT, Budget, SearchSpace

    space = SearchSpace.load(args.space)
    archs = band_archs(space, Budget.parse(flops=args.budget), args.archs, draws=DRAWS, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables = {}
    for backend in LATENCY_BACKENDS:
        tables[backend] = LatencyTable.build(space, DEPLOYMENT, batch_size=1, warmup=args.warmup,
                                             repeats=args.repeats, backend=backend, threads=args.threads)
        tables[backend].save(out / f"latency_backends-{backend}-table.json")
    torch.set_num_threads(args.threads)
    measured = {backend: {} for backend in LATENCY_BACKENDS}
    for i, arch in enumerate(archs):
        order = LATENCY_BACKENDS if i % 2 == 0 else LATENCY_BACKENDS[::-1]
        for backend in order:
            measured[backend][arch.key()] = measure_archs(tables[backend], [arch], warmup=args.warmup,
                                                          repeats=args.repeats, progress=False)[0]
    rows = []
    for arch in archs:
        t, o = measured["torch"][arch.key()], measured["onnxruntime"][arch.key()]
        rows.append({"arch": arch.key(), "gflops": t["gflops"],
                     **{f"torch_{k}": v for k, v in t.items() if k not in ("arch", "gflops")},
                     **{f"onnxruntime_{k}": v for k, v in o.items() if k not in ("arch", "gflops")},
                     "onnxruntime_over_torch": o["measured_ms"] / t["measured_ms"]})
    summary = {"rule": f"{len(archs)} archs, band draw within {args.budget} of the {args.space} space, seed "
                       f"{args.seed}", "threads": args.threads, "processor": tables["torch"].meta["processor"],
               **{backend: {**summarize(list(measured[backend].values())), "scale": tables[backend].scale,
                            "build_seconds": tables[backend].meta["build_seconds"]} for backend in LATENCY_BACKENDS},
               "median_onnxruntime_over_torch": statistics.median(r["onnxruntime_over_torch"] for r in rows)}
    for backend in LATENCY_BACKENDS:
        s = summary[backend]
        print(f"{backend:<12} table error: median {s['median_abs_error_pct']:.1f}%, 90th percentile "
              f"{s['p90_abs_error_pct']:.1f}%; noise floor median {s['median_abs_noise_pct']:.1f}% "
              f"(scale {s['scale']:.3f}, built in {s['build_seconds']:.0f} s)")
    print(f"onnxruntime / torch whole-network latency, median over the archs: "
          f"{summary['median_onnxruntime_over_torch']:.2f}x")
    write_rows(out, f"latency_backends-t{args.threads}-seed{args.seed}", summary, rows)
    return 0


if __name__ == "__main__":
    run(main)

"""``launch.py check-latency --table FILE``: how well a latency table predicts whole networks, on its own device.

Run where the table was measured. For archs drawn by a stated rule within a budget, each whole network is timed
twice in the table's backend, threads and batch: the first time against the prediction (the table's error), the
second against the first (the noise floor: what no table can beat on this machine).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from nas.errors import UserError
from nas.settings import DEFAULT_BUDGET, DRAWS, LatencyConfig, RankingConfig

from .common import check_writable_dir
from .flags import add_setting_flags, settings_from_args

HELP = "check a latency table here: predicted against measured whole-network latency, beside the noise floor"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--table", required=True, metavar="FILE", help="a table written by latency-table")
    add_setting_flags(parser, RankingConfig(), ("archs",))  # drawn as check-ranking draws them
    parser.add_argument("--budget", default=DEFAULT_BUDGET, help="the band the archs are drawn from")
    parser.add_argument("--seed", type=int, default=0, help="seed of the arch draw")
    add_setting_flags(parser, LatencyConfig(), ("warmup", "repeats"))  # as the table's entries were timed
    parser.add_argument("--out-dir", default=None, metavar="DIR",
                        help="where the report goes (default: beside the table, <table>-check/)")


def run(args: argparse.Namespace) -> int:
    settings_from_args(RankingConfig(), args, ("archs",))  # the ranges, checked before any import
    timing = settings_from_args(LatencyConfig(), args, ("warmup", "repeats"))
    table_path = Path(args.table)
    if not table_path.is_file():  # before the imports below: a wrong path costs no seconds
        raise UserError(f"--table {table_path}: no such file (write one with launch.py latency-table)")
    out = Path(args.out_dir) if args.out_dir else table_path.with_name(f"{table_path.stem}-check")
    from nas.ranking.arch_sets import band_archs
    from searchspace import Budget

    budget = Budget.parse(flops=args.budget)
    check_writable_dir(out, "--out-dir" if args.out_dir else "the report folder")
    from nas.latency.check import check_here, measure_archs, summarize, table_threads
    from nas.latency.table import LatencyTable
    from nas.runs.files import write_csv_atomic
    from searchspace import write_json_atomic

    table = LatencyTable.load(table_path)
    check_here(table, str(table_path))
    archs = band_archs(table.space, budget, args.archs, draws=DRAWS, seed=args.seed)
    rule = (f"{len(archs)} archs at evenly spaced FLOPs quantiles of the distinct archs within "
            f"{budget.flops / 1e9:.2f} GFLOPs among {DRAWS} uniform draws (seed {args.seed})")
    print(f"checking {table_path} ({table.device}, {table.backend}) on {rule}", flush=True)
    rows = measure_archs(table, archs, warmup=timing.warmup, repeats=timing.repeats)
    summary = {"table": str(table_path), "device": table.device, "backend": table.backend,
               "processor": table.meta.get("processor"), "batch_size": table.batch_size,
               "threads": table_threads(table), "rule": rule, "archs": len(rows), "warmup": timing.warmup,
               "repeats": timing.repeats, **summarize(rows)}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "check-latency.json", {"summary": summary, "rows": rows})
    write_csv_atomic(out / "check-latency.csv", rows)
    _plot(out / "check-latency.png", rows, summary)
    print(f"\nerror of the table: median {summary['median_abs_error_pct']:.1f}%, 90th percentile "
          f"{summary['p90_abs_error_pct']:.1f}%; the same network measured twice: median "
          f"{summary['median_abs_noise_pct']:.1f}%, 90th percentile {summary['p90_abs_noise_pct']:.1f}%")
    print(f"outputs: {out}/check-latency.json, check-latency.csv, check-latency.png")
    return 0


def _plot(path: Path, rows: list[dict], summary: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from searchspace import atomic_path

    measured, predicted = [r["measured_ms"] for r in rows], [r["predicted_ms"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(measured, predicted, s=18)
    top = max(measured + predicted) * 1.05
    ax.plot([0, top], [0, top], color="grey", lw=0.8)
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="measured (ms)", ylabel="predicted (ms)",
           title=f"{summary['device']} ({summary['backend']}): median error {summary['median_abs_error_pct']:.1f}%\n"
                 f"noise floor {summary['median_abs_noise_pct']:.1f}%")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)

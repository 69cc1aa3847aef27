"""``launch.py latency-table --out FILE``: measure a latency table on the machine a network will run on.

Run it on the deployment device (a CPU server, an edge box, the machine behind an ONNX Runtime service); the file
it writes describes itself (device, processor, backend, batch, threads, software, space and setting) and is what
``search --latency-table FILE`` predicts with, wherever the search runs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from nas.errors import UserError
from nas.settings import LatencyConfig

from .common import add_space_argument, check_writable_dir, load_space
from .flags import add_setting_flags, settings_from_args

HELP = "measure a latency table on this device (PyTorch or ONNX Runtime) for searches run anywhere"
LATENCY_FLAGS = ("backend", "device", "batch_size", "threads", "warmup", "repeats")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="FILE", help="the table file to write (JSON)")
    add_space_argument(parser)
    add_setting_flags(parser, LatencyConfig(), LATENCY_FLAGS)


def run(args: argparse.Namespace) -> int:
    cfg = settings_from_args(LatencyConfig(), args)
    space = load_space(args.space)
    out = Path(args.out)
    check_writable_dir(out.parent if str(out.parent) else Path("."), "--out")
    import torch

    from nas.latency.table import LatencyTable
    from searchspace import DEPLOYMENT

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: torch sees no CUDA device on this machine")
    table = LatencyTable.build(space, DEPLOYMENT, device=cfg.device, batch_size=cfg.batch_size, warmup=cfg.warmup,
                               repeats=cfg.repeats, backend=cfg.backend, threads=cfg.threads)
    table.save(out)
    print(f"latency table {out}: {len(table.entries)} components, whole-network scale {table.scale:.3f}, measured "
          f"as {table.device} ({table.backend}, {table.meta['processor']}, batch {table.batch_size}, "
          f"{table.meta['threads']} threads) in {table.meta['build_seconds']:.0f} s")
    print(f"next: python launch.py search --latency-table {out} ...   (on any machine); "
          f"python launch.py check-latency --table {out}   (here)")
    return 0

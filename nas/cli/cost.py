"""``launch.py cost --arch FILE``: FLOPs (fvcore) and parameters at the deployment setting."""
from __future__ import annotations

import argparse
import json

from searchspace import DEPLOYMENT, arch_cost, format_flops, format_params, load_arch_file

from .common import add_space_argument, load_space

HELP = "FLOPs and parameters of an arch file at the deployment setting (224x224x3, 1000 classes, batch 1)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", metavar="FILE", required=True, help="an arch JSON file")
    add_space_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object with flops and params as plain counts")
    parser.add_argument("--analytic", action="store_true", help="use the analytic cost only (no network built)")


def run(args: argparse.Namespace) -> int:
    arch, _ = load_arch_file(args.arch)
    load_space(args.space).validate(arch, source=args.arch)
    analytic = arch_cost(arch, DEPLOYMENT)
    if args.analytic:
        flops, params = analytic.flops, analytic.params
    else:
        from supernet import MixerNet, fvcore_flops, num_params  # torch only when needed
        net = MixerNet.from_arch(arch, DEPLOYMENT)
        flops, params = fvcore_flops(net, DEPLOYMENT.img_size, DEPLOYMENT.in_chans), num_params(net)
    if args.json:
        print(json.dumps({**arch.to_dict(), "flops": flops, "params": params, "flops_analytic": analytic.flops,
                          "setting": DEPLOYMENT.to_dict()}))
    else:
        print(f"{arch.key()}: {format_flops(flops)} FLOPs ({flops:,}), {format_params(params)} params ({params:,})")
    return 0

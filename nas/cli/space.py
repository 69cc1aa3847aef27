"""``launch.py space``: the choices, the number of archs, the cheapest and the dearest arch."""
from __future__ import annotations

import argparse
import json

from searchspace import DEPLOYMENT, arch_cost, extreme_archs, format_flops, format_params

from .common import add_space_argument, load_space

HELP = "show the search space: choices per stage, size, cheapest and dearest arch (deployment setting)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_space_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    cheapest, dearest = extreme_archs(space, DEPLOYMENT)
    extremes = {name: (arch, arch_cost(arch, DEPLOYMENT)) for name, arch in (("cheapest", cheapest), ("dearest", dearest))}
    if args.json:
        print(json.dumps({**space.to_dict(), "size": space.size(), **{
            name: {**arch.to_dict(), "flops": cost.flops, "params": cost.params}
            for name, (arch, cost) in extremes.items()}}))
        return 0
    width = max(44, *(len(', '.join(s.mixers)) for s in space.stages))
    print(f"{'stage':<6} {'mixers':<{width}} {'kernels':<10} {'depths':<13} pools" + ("  (pool 2 by)" if space.has_pool_ops else ""))
    for i, s in enumerate(space.stages, start=1):
        ops = f"  ({', '.join(s.pool_ops)})" if space.has_pool_ops and 2 in s.pools else ""
        print(f"{i:<6} {', '.join(s.mixers):<{width}} {str(list(s.kernels)):<10} {str(list(s.depths)):<13} {list(s.pools)}{ops}")
    print(f"\n{space.size():,} archs. Costs at the deployment setting "
          f"({DEPLOYMENT.img_size}x{DEPLOYMENT.img_size}x{DEPLOYMENT.in_chans}, {DEPLOYMENT.num_classes} classes, C={DEPLOYMENT.embed_dim}):")
    for name, (arch, cost) in extremes.items():
        print(f"  {name:<9} {format_flops(cost.flops):>9} FLOPs {format_params(cost.params):>8} params  {arch.key()}")
    return 0

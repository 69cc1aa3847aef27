"""``launch.py supernet``: train the weight-sharing supernet (in this process or with Ray Train)."""
from __future__ import annotations

import argparse
import time

from nas.settings import PATH_SAMPLERS, SUPERNET_RECIPE, SupernetJob
from searchspace import Budget, SearchSpace

from .common import add_space_argument, check_writable_dir, load_space, open_run
from .train_args import (add_data_arguments, add_model_arguments, add_train_arguments, data_config, model_options,
                         train_config)

HELP = "train the weight-sharing supernet over the search space (or only the paths within --path-budget)"


def add_arguments(parser: argparse.ArgumentParser, *, seed_flag: str = "--seed", path_budget: bool = True) -> None:
    add_space_argument(parser)
    parser.add_argument("--path-sampler", choices=PATH_SAMPLERS, default="spos",
                        help="spos: one uniform random path per step; sandwich: the largest (within the path "
                             "budget, if any) + the smallest + a random one")
    parser.add_argument("--inplace-distill", action="store_true",
                        help="with --path-sampler sandwich: the largest path learns from the labels, the others from "
                             "its predictions (BigNAS in-place distillation)")
    if path_budget:
        parser.add_argument("--path-budget", default=None, metavar="FLOPS",
                            help="train only the paths within this FLOPs budget at 224x224 (e.g. 4.5GFLOPs: the "
                                 "archs a search under it can pick; default: every path)")
    parser.add_argument("--run-dir", default=None,
                        help="run folder (default: <storage>/supernet/<dataset>-<sampler>-<config hash>)")
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_train_arguments(parser, SUPERNET_RECIPE, seed_flag=seed_flag)


def job_from_args(args: argparse.Namespace, space: SearchSpace, path_budget: Budget | None = None) -> SupernetJob:
    """The job the flags describe over ``space``, every part checked (no torch needed): the data and its folder,
    the recipe, the path budget (``--path-budget``, else ``path_budget``: one the caller has checked)."""
    if getattr(args, "path_budget", None):
        path_budget = Budget.parse(flops=args.path_budget)
        path_budget.check_covers_cheapest(space, f"--path-budget {args.path_budget}")
    train = train_config(args)
    data, model = data_config(args), model_options(args)
    model.resolve(data.side)
    return SupernetJob(data=data, train=train, model=model, path_sampler=args.path_sampler, space=space,
                       path_budget_flops=None if path_budget is None else path_budget.flops,
                       inplace_distill=args.inplace_distill)


def run(args: argparse.Namespace) -> int:
    job = job_from_args(args, load_space(args.space))
    storage = args.storage
    run_dir = storage.run_path(args.run_dir, job.default_run_dir(storage.root))
    check_writable_dir(run_dir, "--run-dir" if args.run_dir else "the run folder")
    supernet_run = open_run(args, run_dir)  # under a URI storage: what a driver elsewhere left
    from nas.train.supernet import train_supernet  # after the checks: a bad flag is refused before torch is imported

    print(f"supernet run: {run_dir}", flush=True)
    start = time.perf_counter()
    final = train_supernet(job, supernet_run, resume=args.resume, num_workers=args.num_workers, use_gpu=args.gpu)
    print(f"supernet trained in {time.perf_counter() - start:.0f}s: {final} (metrics: {run_dir / 'metrics.csv'})")
    return 0

"""``launch.py retrain --arch results/best.json``: train the searched network from scratch."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nas.errors import UserError
from nas.runs.layout import RUN_CONFIG
from nas.runs.migrate import migrate
from nas.runs.record import read_supernet_record
from nas.search.score import score_named
from nas.settings import INITS, DataConfig, ModelOptions, RetrainJob, TrainConfig, TrialResources
from searchspace import DEPLOYMENT, Arch, SearchSpace, arch_cost, format_flops, load_arch_file
from searchspace.arch import read_json_file

from .common import add_space_argument, check_writable_dir, load_space, open_run
from .flags import add_setting_flags
from .train_args import (add_data_arguments, add_model_arguments, add_train_arguments, data_config, inherit_data_config,
                         inherit_model_settings, model_options, train_config)

HELP = "retrain a searched arch (or the top-K of a Pareto front) from scratch and evaluate it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--arch", metavar="FILE", help="an arch file, e.g. results/best.json")
    what.add_argument("--pareto", metavar="FILE", help="a search's pareto.json: retrain its --top-k members")
    parser.add_argument("--top-k", type=int, default=3, help="with --pareto: how many members (best top-1 first)")
    add_setting_flags(parser, TrialResources(), ("cpus",))
    parser.add_argument("--init", choices=INITS, default=INITS[0],
                        help="start from random weights, or from the supernet's inherited ones")
    parser.add_argument("--supernet", metavar="FILE", default=None,
                        help="supernet.pt for --init supernet (default: the one the arch was searched with)")
    parser.add_argument("--run-dir", default=None, help="output folder (default: <search run>/retrain)")
    add_space_argument(parser, default="the space the arch was searched in, else default")
    add_setting_flags(parser.add_argument_group("recipe extras"), TrainConfig(), ("ema_decay", "mixup", "cutmix"))
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_train_arguments(parser, TrainConfig())


def _search_info(extra: dict) -> dict:
    info = extra.get("search")
    return migrate("search info", info) if isinstance(info, dict) else {}


def _search_config(search_run: str | None) -> dict:
    """The search's config.json, as a retrain reads it: its space, supernet, data and network settings."""
    config = Path(search_run) / RUN_CONFIG if search_run else None
    return migrate("search info", read_json_file(config)) if config is not None and config.exists() else {}


def _space_of(args: argparse.Namespace, search_config: dict, search_run: str | None):
    """``--space`` when given; else the space the arch was searched in (a search records it in its
    config.json), so ``retrain --arch results/best.json`` after ``search --space extended`` needs no flag."""
    if args.space is None:
        recorded = search_config.get("space")
        if isinstance(recorded, dict):
            return SearchSpace.from_dict(recorded, source=f"{search_run}/config.json space")
    return load_space(args.space)


def _inherit_settings(args: argparse.Namespace, info: dict, search_config: dict, supernet: str | None):
    """Data and network of the run this arch comes from: the supernet's (``--init supernet``) or the search's
    (``info`` from the arch file, else the search's ``search_config``). A data flag that contradicts them exits 2;
    with no such run the flags (or their defaults) apply."""
    options = model_options(args)
    if args.init == "supernet":
        if not supernet:
            raise UserError("--init supernet: no supernet named by the search run; pass --supernet FILE")
        record = read_supernet_record(supernet)  # without torch: a wrong file or flag is refused in milliseconds
        source = f"supernet {supernet}"
        inherit_model_settings(args, record.settings, source)
        data, model = record.job.data, record.job.model
    else:
        search = info if info.get("data") else search_config
        if not search.get("data"):
            data = data_config(args)
            options.resolve(data.side)  # a patch that does not tile the input: refused before torch
            return data, options
        source = f"the search {info.get('run')}"
        data = DataConfig.from_dict(search["data"])
        model = ModelOptions.from_dict(search["model"])
    data = inherit_data_config(args, data, source)
    model = ModelOptions(embed_dim=options.embed_dim or model.embed_dim,
                         patch_size=options.patch_size or model.patch_size, drop_path_rate=options.drop_path_rate)
    model.resolve(data.side)
    return data, model


def run(args: argparse.Namespace) -> int:
    train = train_config(args)
    model_options(args)  # the network flags' ranges, before any file is read
    if args.pareto:
        return _run_front(args, train)

    storage = args.storage
    arch_path = storage.file_path(args.arch)
    arch, extra = load_arch_file(arch_path)
    info = _search_info(extra)
    if info.get("run"):  # recorded by a driver that may have mirrored the same URI storage elsewhere
        info["run"] = str(storage.localize(info["run"]))
    search_config = _search_config(info.get("run"))  # read once: space, supernet, data settings
    _space_of(args, search_config, info.get("run")).validate(arch, source=args.arch)
    cost = arch_cost(arch, DEPLOYMENT)
    budget = info.get("budget_flops")
    if isinstance(budget, (int, float)) and cost.flops > budget:
        print(f"warning: {args.arch}: {format_flops(cost.flops)} FLOPs is over the {format_flops(budget)} budget "
              f"it was searched under; retraining it anyway", file=sys.stderr)
    supernet = (str(storage.file_path(args.supernet)) if args.supernet else
                info.get("supernet") or search_config.get("supernet"))
    if args.init == "supernet" and not supernet:
        raise UserError(f"--init supernet: {args.arch} names no search run; pass --supernet FILE")
    if args.init == "supernet" and not args.supernet:
        supernet = str(storage.localize(supernet))
    data, model = _inherit_settings(args, info, search_config, supernet)
    run_dir = storage.run_path(args.run_dir, Path(info["run"]) / "retrain" if info.get("run")
                               else storage.root / f"retrain-{arch.key()}")
    check_writable_dir(run_dir, "--run-dir" if args.run_dir else "the run folder")
    retrain_run = open_run(args, run_dir)
    from nas.train.retrain import retrain  # after the checks: a bad flag is refused before torch is imported

    job = RetrainJob(arch.to_dict(), data, train, model, args.init, supernet)
    print(f"retraining {arch.key()} ({format_flops(cost.flops)} FLOPs at 224x224) from {args.init} in {run_dir}",
          flush=True)
    m = retrain(job, retrain_run, resume=args.resume, num_workers=args.num_workers, use_gpu=args.gpu)
    print(f"\n{m['name']}: test top-1 {100 * m['test_top1']:.2f}% ({m['weights']} weights; validation "
          f"{100 * m['val_top1']:.2f}%, best validation epoch {m['best_epoch']}), {m['params'] / 1e6:.2f}M params here, deployment "
          f"{format_flops(m['flops_deployment'])} FLOPs / {m['params_deployment'] / 1e6:.2f}M params / "
          f"{m['latency_ms_deployment']:.1f} ms, {m['wall_time_s']:.0f}s")
    print(f"outputs: {run_dir}/metrics.json, model.pt (load: nas.hub.load_model('{run_dir}'))")
    return 0


def _run_front(args: argparse.Namespace, train) -> int:
    storage = args.storage
    path = storage.file_path(args.pareto)
    pareto = read_json_file(path)
    front = pareto.get("front") if isinstance(pareto, dict) else None
    if not isinstance(front, list) or not front:
        raise UserError(f"{path}: no 'front' list (expected a search's pareto.json)")
    if args.top_k < 1:
        raise UserError("--top-k must be at least 1")
    TrialResources(args.cpus_per_trial)
    search_run = str(path.parent)
    search_config = _search_config(search_run)
    space = _space_of(args, search_config, search_run)
    pareto = migrate("pareto", pareto)
    score = score_named(pareto["score"], str(path))
    members = sorted(front, key=lambda m: -m[score.key])[:args.top_k]
    for i, m in enumerate(members):
        space.validate(Arch.from_dict({"stages": m["stages"]}, source=f"{path} member {i + 1}"),
                       source=f"{path} member {i + 1}")
    supernet = str(storage.file_path(args.supernet)) if args.supernet else pareto.get("supernet")
    if supernet and args.init == "supernet" and not args.supernet:
        supernet = str(storage.localize(supernet))
    data, model = _inherit_settings(args, {"run": search_run}, search_config, supernet)
    base = storage.run_path(args.run_dir, path.parent / f"retrain-top{len(members)}")
    check_writable_dir(base, "--run-dir" if args.run_dir else "the run folder")
    front_run = open_run(args, base)
    from nas.ranking.front import retrain_front  # after the checks: a bad flag is refused before torch and Ray

    template = RetrainJob({}, data, train, model, args.init, supernet)
    print(f"retraining {len(members)} front members in parallel in {base}", flush=True)
    weights = pareto["top1_weights"]
    rows = retrain_front(members, template, front_run, cpus_per_trial=args.cpus_per_trial,
                         estimate_weights=weights)
    summary = json.loads((base / "front_retrained.json").read_text())
    print(f"\n{'arch':<34} {'GFLOPs':>7} {'estimated':>10} {'retrained':>10}   (estimated: validation, "
          f"supernet weights {weights}; retrained: test split)")
    for r in rows:
        retrained = f"{100 * r['retrained_top1']:9.2f}%" if r["retrained_top1"] is not None else "   failed"
        print(f"{r['arch']:<34} {r['flops'] / 1e9:7.2f} {100 * r['estimated_top1']:9.2f}% {retrained}")
    print(f"Kendall tau (estimated vs retrained): {summary['kendall_tau']:.3f}")
    print(f"outputs: {base}/front_retrained.csv, front_retrained.json, front_retrained.png")
    return 0 if not summary["errors"] else 1

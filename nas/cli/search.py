"""``launch.py search --budget 4.5GFLOPs``: find the accuracy-FLOPs-latency Pareto front under a budget."""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import time
from pathlib import Path

from nas.errors import UserError
from nas.runs.layout import LATENCY_TABLE, RUN_CONFIG, SUPERNET
from nas.runs.migrate import migrate
from nas.runs.record import SupernetRecord, read_supernet_record
from nas.settings import DEFAULT_BUDGET, DataConfig, SearchConfig
from searchspace import DEPLOYMENT, Budget, SearchSpace, format_flops, write_json_atomic
from searchspace.arch import read_json_file

from . import supernet as supernet_cmd
from .common import check_trial_fits_here, check_writable_dir, load_space, open_run
from .flags import add_setting_flags, settings_from_args
from .train_args import inherit_data_config, inherit_model_settings

HELP = "search the space for the top-1 / FLOPs / latency Pareto front under a budget (Ray Tune + Optuna)"
SEARCH_DEFAULTS = SearchConfig(budget_flops=Budget.parse(flops=DEFAULT_BUDGET).flops)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("search")
    g.add_argument("--budget", default=DEFAULT_BUDGET,
                   help=f"FLOPs budget at 224x224, batch 1 (default: {DEFAULT_BUDGET}, Swin-T's cost)")
    g.add_argument("--latency-budget", default=None, help="latency budget, e.g. 25ms (default: none)")
    # --recalib-batches and --max-failures are the supernet's training flags, which the search shares
    add_setting_flags(g, SEARCH_DEFAULTS, ("sampler", "trials", "latency", "latency_batch", "latency_table",
                                           "cpus_per_trial", "gpus_per_trial", "max_concurrent"))
    g.add_argument("--completion-order", action="store_true",
                   help="tell results to the sampler as trials finish (default: in suggestion order, so the same "
                        "seed, supernet and flags give the same trials; a slot may wait for a slower trial)")
    g.add_argument("--supernet", metavar="FILE", default=None,
                   help="a trained supernet.pt (default: the one for these settings, trained if missing)")
    g.add_argument("--search-dir", default=None, help="run folder (default: <storage>/search-<time>; "
                   "with --resume: the latest <storage>/search-*)")
    add_setting_flags(g, SEARCH_DEFAULTS, ("seed", "finetune_steps", "score", "seed_models"))
    g.add_argument("--train-all-paths", action="store_true",
                   help="train the supernet on every path of the space (default: only the paths within --budget, "
                        "the archs this search can pick)")
    supernet_cmd.add_arguments(parser, seed_flag="--supernet-seed", path_budget=False)


def _open_search_run(args: argparse.Namespace):
    """The search's run: one holding a search to resume (under a URI storage, fetched from it), or one where no
    search ran (checked before any training)."""
    storage = args.storage
    if args.resume and not args.search_dir:
        search_dir = storage.latest_run("search-*", RUN_CONFIG)
        if search_dir is None:
            raise UserError(f"{storage.describe()}: no search to resume (pass --search-dir)")
    else:
        search_dir = storage.run_path(args.search_dir, storage.root / time.strftime("search-%Y%m%d-%H%M%S"))
    check_writable_dir(search_dir, "--search-dir" if args.search_dir else "the search folder")
    search_run = open_run(args, search_dir)
    if args.resume and not search_run.path(RUN_CONFIG).exists():
        raise UserError(f"{search_dir}: no search to resume (no config.json)")
    if not args.resume and search_run.path(RUN_CONFIG).exists():
        raise UserError(f"{search_dir}: a search already ran here (use --resume, or another --search-dir)")
    return search_run


def _supernet_data(args: argparse.Namespace, space: SearchSpace, record: SupernetRecord, path: str | Path) -> DataConfig:
    """The data settings a supernet imposes on this search; a supernet trained over another space, or a data or
    network flag that contradicts it, raises UserError."""
    if record.space != space:
        raise UserError(f"{path}: trained over another search space than the one given")
    source = f"supernet {path}"
    data = inherit_data_config(args, record.job.data, source)
    inherit_model_settings(args, record.settings, source)
    return data


def _check_latency_table(path: Path, space: SearchSpace, batch_size: int) -> None:
    """A table file for another space, setting or batch is refused before any work (read without torch)."""
    data = read_json_file(path)
    source = f"--latency-table {path}"
    try:
        table_space = SearchSpace.from_dict(data["space"], source=source)
        settings, batch, device = data["settings"], int(data["batch_size"]), data["device"]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{source}: not a latency table (write one with launch.py latency-table)") from None
    if table_space != space:
        raise UserError(f"{source}: measured for another search space than this search's (rebuild it with "
                        f"latency-table --space)")
    if settings != DEPLOYMENT.to_dict():
        raise UserError(f"{source}: measured at another network setting than the deployment setting")
    if batch != batch_size:
        raise UserError(f"{source}: measured at batch {batch} ({device}), the search asks for --latency-batch "
                        f"{batch_size}")


def _config_from_args(args: argparse.Namespace) -> SearchConfig:
    """The search the flags describe, every range checked (no torch needed)."""
    budget = Budget.parse(flops=args.budget, latency=args.latency_budget)
    return settings_from_args(SEARCH_DEFAULTS, args, budget_flops=budget.flops, latency_budget_s=budget.latency_s,
                              ordered=not args.completion_order)


def run(args: argparse.Namespace) -> int:
    storage = args.storage
    search_run = _open_search_run(args)
    search_dir = search_run.folder
    results = search_run.beside(storage.root)  # best.json, the latency cache, a supernet the search trains
    if args.resume:
        saved = migrate("search config", json.loads((search_dir / RUN_CONFIG).read_text()))
        config = SearchConfig.from_dict(saved["search"])
        supernet_path = storage.localize(saved["supernet"])
        data_cfg = DataConfig.from_dict(saved["data"])
    else:
        config = _config_from_args(args)
        space = load_space(args.space)
        config.budget.check_covers_cheapest(space, f"budget {args.budget}")
        if config.latency_table:
            _check_latency_table(storage.file_path(config.latency_table), space, config.latency_batch)
    check_writable_dir(results.folder, "the results folder")
    job = None  # the supernet the flags describe, when the search trains (or finds) its own
    if args.supernet and not args.resume:  # its settings read without torch: a flag contradicting them costs no imports
        supernet_path = storage.file_path(args.supernet)
        _supernet_data(args, space, read_supernet_record(supernet_path), supernet_path)
    elif not args.resume:
        job = supernet_cmd.job_from_args(args, space, path_budget=None if args.train_all_paths else config.budget)
    # After the checks above: a bad flag is refused before torch, Ray and Optuna are imported (seconds).
    import torch

    from nas.search.driver import run_search
    from nas.search.trial import TrialContext
    from nas.train.supernet import load_supernet_state

    if args.resume:
        print(f"resuming search {search_dir}", flush=True)
    else:
        if not args.cluster.address:  # the local Ray holds this machine's CPUs and GPUs: a bigger trial waits forever
            check_trial_fits_here(config.cpus_per_trial, config.gpus_per_trial, torch.cuda.device_count())
        if not args.supernet:  # (a --supernet's data settings are the search's: checked above)
            supernet_path = _supernet_for(job, args, results)

    state = load_supernet_state(supernet_path)
    record = SupernetRecord.from_state(state, supernet_path)
    if not args.resume:
        data_cfg = _supernet_data(args, space, record, supernet_path)
        band = record.job.path_budget_flops
        if band is not None and band < config.budget_flops:
            print(f"warning: {supernet_path} trained only the paths within {format_flops(band)} FLOPs: archs above "
                  f"that get untrained estimates (train one for this budget: leave out --supernet)", flush=True)
    search_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(search_dir / RUN_CONFIG, {
        "search": config.to_dict(), "supernet": str(supernet_path), "data": data_cfg.to_dict(),
        "supernet_job": record.job.to_dict(), **{k: v for k, v in record.to_state().items() if k != "job"},
        "objective_split": "val", "deployment": DEPLOYMENT.to_dict(), "torch": torch.__version__})

    table, latency_on = _latency_axis(config, record.space, search_run, results, resume=args.resume)
    ctx = TrialContext.from_supernet(state, config, data=data_cfg, latency_table=table,
                                     fingerprint=str(supernet_path.resolve()))
    start = time.perf_counter()
    with search_run:
        rows, finished = run_search(ctx, search_run, resume=args.resume)
        summary = _write_outputs(rows, config, search_dir, results, supernet_path, data_cfg, record, latency_on)
    results.sync("best.json")
    return _report(summary, finished, time.perf_counter() - start, config, search_dir, supernet_path, storage)


def _write_outputs(rows: list[dict], config: SearchConfig, search_dir: Path, results, supernet_path: Path,
                   data_cfg: DataConfig, record: SupernetRecord, latency_on: str) -> dict:
    from nas.search.outputs import write_search_outputs
    from nas.search.score import SCORES

    return write_search_outputs(
        search_dir, rows, budget=config.budget, results_root=results.folder,
        title=f"{search_dir.name}: {config.sampler}, {config.trials} trials, budget "
              f"{format_flops(config.budget_flops)} FLOPs",
        extra={"sampler": config.sampler, "seed": config.seed, "supernet": str(supernet_path),
               "top1_split": "val (carved from the training data; the search never reads the test split)",
               "top1_weights": config.top1_weights},
        search_info={"supernet": str(supernet_path), "data": data_cfg.to_dict(), "model": record.job.model.to_dict(),
                     "latency_on": latency_on}, latency_on=latency_on, score=SCORES[config.score])


def _latency_axis(config: SearchConfig, space: SearchSpace, search_run, results, *, resume: bool):
    """The table the search predicts latency with (None: ``--latency measure``), and whose latency it is."""
    import torch

    from nas.latency.table import LatencyTable, load_or_build_table
    from nas.latency.timing import device_tag

    device = "cuda" if config.gpus_per_trial > 0 and torch.cuda.is_available() else "cpu"
    table, latency_on = None, f"{device_tag(device, config.latency_batch)} (torch, each arch measured in its trial)"
    if config.latency_table:
        kept = search_run.path(LATENCY_TABLE)  # the run's own copy: a driver that resumes elsewhere reads the same
        if not resume:
            shutil.copyfile(results.storage.file_path(config.latency_table), kept)
            search_run.sync(LATENCY_TABLE)
        table = LatencyTable.load(kept)
    elif config.latency == "lut":
        table = load_or_build_table(space, DEPLOYMENT, device=device, batch_size=config.latency_batch,
                                    cache_dir=results.fetch("latency"))
        results.sync("latency")  # a driver that resumes elsewhere predicts with the same table
    if table is not None:
        latency_on = (f"{table.device} ({table.backend}, {table.meta.get('processor', 'processor not recorded')}, "
                      f"batch {table.batch_size})")
        print(f"latency axis: {latency_on}" + (f", from {config.latency_table}" if config.latency_table else
                                               ", measured on this machine"), flush=True)
    return table, latency_on


def _supernet_for(job, args: argparse.Namespace, results) -> Path:
    """The supernet of ``job`` under the storage, trained now if no run trained it before (perhaps elsewhere)."""
    from nas.train.supernet import train_supernet

    supernet_run = results.beside(job.default_run_dir(results.folder))
    supernet_path = supernet_run.fetch(SUPERNET)
    if not supernet_path.exists():
        print(f"no supernet checkpoint for these settings ({supernet_path}): training one", flush=True)
        supernet_run.fetch()  # the epochs a run elsewhere reached
        train_supernet(job, supernet_run, resume=True, num_workers=args.num_workers, use_gpu=args.gpu)
    return supernet_path


def _report(summary: dict, finished: bool, seconds: float, config: SearchConfig, search_dir: Path,
            supernet_path: Path, storage) -> int:
    """What the terminal shows at the end, and the exit code: 130 interrupted, 1 nothing within the budget."""
    from nas.ranking.check import last_check
    from nas.search.outputs import format_table
    from nas.search.score import SCORES

    results, score = storage.root, SCORES[config.score]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary["counts"].items()))
    if not finished:
        print(f"\nsearch interrupted ({counts}); partial outputs are in {search_dir}. Continue with:\n"
              f"  python launch.py search --resume --search-dir {search_dir}", flush=True)
        return 130
    print(f"\nsearch finished in {seconds:.0f}s: {counts}; hypervolume {summary['hypervolume']:.4f}")
    if not summary["front"]:
        print("no arch within the budget was evaluated: raise --trials or the budget")
        return 1
    front = sorted(summary["front"], key=lambda r: -r[score.key])
    weights = f"inherited weights + {config.finetune_steps} steps alone" if config.finetune_steps else "inherited weights"
    print(f"Pareto front ({score.title} on the validation split, {weights}; cost at 224x224):\n"
          f"{format_table(front, score=score)}")
    # How far to trust those scores: the supernet's last stand-alone ranking check.
    print(last_check(supernet_path, config.finetune_steps, config.score))
    print(f"\noutputs: {search_dir}/trials.csv, pareto.json, pareto.png")
    print(f"best: {search_dir / 'best.json'} (also {results / 'best.json'})")
    if storage.uri:
        print(f"stored at {storage.uri}; next: python launch.py retrain --storage {shlex.quote(storage.uri)} "
              f"--arch best.json")
    else:
        print(f"next: python launch.py retrain --arch {results / 'best.json'}")
    return 0

"""One trial: an arch's costs, then (within every budget) its scores with inherited weights."""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

import ray
import torch
from ray import tune

from nas.data.datasets import build_data
from nas.data.splits import DataBundle
from nas.latency.table import LatencyTable
from nas.latency.timing import device_lock, measure_latency
from nas.runs.record import SupernetRecord
from nas.runs.run import Run
from nas.search.params import arch_from_params
from nas.search.score import rejected_scores, trial_scores
from nas.settings import DataConfig, SearchConfig, TrainConfig
from nas.train.evaluate import evaluate_arch
from searchspace import DEPLOYMENT, Arch, NetSettings, SearchSpace, arch_cost, write_json_atomic
from supernet import MixerNet


class Evaluations:
    """Each evaluated arch's result, written by its trial into the search's run folder (``evaluations/<arch>.json``)
    and sent to the run's storage before the trial reports it. A driver killed after a trial ended but before Tune's
    state holding that end reached the storage resumes from an earlier save: Tune runs that trial again, or the
    restored sampler suggests the same arch again, and the trial reads the result here instead of evaluating the arch
    a second time."""

    FOLDER = "evaluations"

    def __init__(self, search_run: Run) -> None:
        self.run = search_run.sub(self.FOLDER)  # unpickled in a trial on another node: that node's mirror

    def get(self, arch: Arch) -> dict | None:
        path = self.run.fetch(f"{arch.key()}.json")
        return json.loads(path.read_text()) if path.exists() else None

    def put(self, arch: Arch, metrics: dict) -> None:
        self.run.folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.run.path(f"{arch.key()}.json"), metrics)
        self.run.sync(f"{arch.key()}.json")


@dataclass
class TrialContext:
    """What every trial needs; reaches the workers once through ``tune.with_parameters``."""
    supernet_state: dict[str, torch.Tensor]
    settings: NetSettings
    space: SearchSpace
    data: DataConfig
    config: SearchConfig
    latency_table: LatencyTable | None = None  # None with ``--latency measure``
    fingerprint: str = ""
    recipe: TrainConfig | None = None     # the supernet's recipe: what fine-tuning an arch follows
    evaluations: Evaluations | None = None  # where each trial keeps its result (the search driver sets it)

    @classmethod
    def from_supernet(cls, state: dict, config: SearchConfig, *, data: DataConfig | None = None,
                      latency_table: LatencyTable | None = None, fingerprint: str = "") -> "TrialContext":
        """From a supernet checkpoint's content: its weights, network, space and recipe, and its data unless
        ``data`` is given."""
        record = SupernetRecord.from_state(state)
        return cls(state["model"], record.settings, record.space, data or record.job.data, config, latency_table,
                   fingerprint, record.job.train)


_WORKER_CACHE: dict[str, Any] = {}


def _worker_supernet(ctx: TrialContext) -> tuple[MixerNet, DataBundle]:
    """Build the supernet once per worker process (Ray reuses trial actors)."""
    key = f"supernet:{ctx.fingerprint}"
    if key not in _WORKER_CACHE:
        net = MixerNet(ctx.space, ctx.settings)
        net.load_state_dict(ctx.supernet_state)
        _WORKER_CACHE.clear()
        _WORKER_CACHE[key] = net.eval()
        _WORKER_CACHE["data"] = build_data(ctx.data)
    return _WORKER_CACHE[key], _WORKER_CACHE["data"]


def trial_metrics(arch: Arch, ctx: TrialContext, device: torch.device) -> dict[str, Any]:
    """Evaluate one arch: costs first, its scores (``nas.search.score``) only if within every budget."""
    cost = arch_cost(arch, DEPLOYMENT)
    cfg = ctx.config
    measuring = cfg.latency == "measure"
    if measuring:
        net = MixerNet.from_arch(arch, DEPLOYMENT)
        with device_lock(device, exclusive=True):  # no other trial's kernels on this device while timing
            latency = measure_latency(net, DEPLOYMENT, batch_size=cfg.latency_batch, device=device)
        del net
    else:
        latency = ctx.latency_table.predict(arch)
    metrics = {"flops": cost.flops, "params": cost.params, "latency_ms": latency * 1e3, "arch": arch.key()}
    if not cfg.budget.admits(cost, latency_s=latency):  # the FLOPs were screened before: only a measured latency
        return {**metrics, **rejected_scores(), "feasible": 0, "state": "over_latency_budget"}
    supernet, data = _worker_supernet(ctx)
    with (device_lock(device, exclusive=False) if measuring else contextlib.nullcontext()):
        supernet = supernet.to(device)
        evaluation = evaluate_arch(supernet, arch, data, recalib_batches=cfg.recalib_batches, seed=cfg.seed,
                                   device=device, finetune_steps=cfg.finetune_steps, recipe=ctx.recipe)
    return {**metrics, **trial_scores(evaluation), "feasible": 1, "state": "completed"}


def evaluate_trial(config: dict, ctx: TrialContext) -> None:
    """The Ray Tune function trainable: one arch, one report (``kept``: 1 when the arch's result was kept from
    before the driver restarted)."""
    arch = arch_from_params(config, ctx.space.num_stages)
    kept = ctx.evaluations.get(arch) if ctx.evaluations is not None else None
    if kept is not None:
        tune.report({**kept, "kept": 1})
        return
    torch.set_num_threads(max(1, int(ctx.config.cpus_per_trial)))
    device = torch.device("cuda" if ctx.config.gpus_per_trial > 0 and torch.cuda.is_available() else "cpu")
    node = ray.get_runtime_context().get_node_id()  # trials.csv says where each trial ran
    metrics = {**trial_metrics(arch, ctx, device), "node": node}
    if ctx.evaluations is not None:
        ctx.evaluations.put(arch, metrics)
    tune.report({**metrics, "kept": 0})

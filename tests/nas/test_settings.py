"""nas.settings: the typed settings of a run. The names of choices other modules implement (so that a command line
is checked without torch) must be ones their implementation accepts; the ranges of the fields hold however a record
is made; old files are migrated."""
import json

import optuna
import pytest
from ray import cloudpickle

from nas.errors import UserError
from nas.runs.migrate import migrate
from nas.search.samplers import make_optuna_sampler
from nas.settings import (AMP_MODES, PATH_SAMPLERS, SEARCH_SAMPLERS, Bound, DataConfig, ModelOptions, RetrainJob,
                          SearchConfig, SupernetJob, TrainConfig, TrialResources)
from nas.train.steps import AMP_DTYPES
from searchspace import SearchSpace
from supernet import SAMPLERS, PathSampler, make_path_sampler


def test_path_samplers_are_the_supernets():
    assert PATH_SAMPLERS == SAMPLERS
    for name in PATH_SAMPLERS:
        assert isinstance(make_path_sampler(name, SearchSpace.default(), seed=0), PathSampler)


def test_search_samplers_are_optuna_samplers_that_ray_can_save():
    for name in SEARCH_SAMPLERS:
        sampler = make_optuna_sampler(name, seed=0, trials=8)
        assert isinstance(sampler, optuna.samplers.BaseSampler)
        # Tune pickles the searcher, sampler included, into every saved state (Optuna 5.1's NSGA-II could not be)
        assert type(cloudpickle.loads(cloudpickle.dumps(sampler))) is type(sampler)
    with pytest.raises(UserError, match="cmaes"):
        make_optuna_sampler("cmaes", seed=0, trials=8)


def test_amp_modes_are_the_engines():
    assert AMP_MODES == tuple(AMP_DTYPES)
    for mode in AMP_MODES:
        assert TrainConfig(amp=mode).amp == mode
    assert TrainConfig.from_dict(migrate("train", {"amp": "off"})).amp is False
    assert TrainConfig.from_dict(migrate("train", {"amp": True})).amp == "fp16"  # a file from before bf16
    with pytest.raises(UserError, match="--amp fp8"):
        TrainConfig(amp="fp8")


@pytest.mark.parametrize("bound, inside, outside", [
    (Bound(0, low_open=True), [1e-9, 2e-3, 1e3], [0, -1, float("nan"), float("inf")]),
    (Bound(0), [0, 0.05, 7], [-1e-9, -5, float("-inf")]),
    (Bound(0, 1, high_open=True), [0, 0.1, 0.999], [1, 1.5, -0.1, float("nan")]),
    (Bound(0, 1, low_open=True, high_open=True), [0.5, 0.9999], [0, 1, 1.5]),
    (Bound(1), [1, 8], [0, -1]),
])
def test_a_bound_admits_what_it_says(bound, inside, outside):
    assert all(bound.admits(v) for v in inside)
    assert not any(bound.admits(v) for v in outside)


def test_bounds_read_as_written():
    assert [str(b) for b in (Bound(0, low_open=True), Bound(0), Bound(0, 1, high_open=True),
                             Bound(0, 1, low_open=True, high_open=True))] == ["> 0", ">= 0", "in [0, 1)", "in (0, 1)"]


@pytest.mark.parametrize("make, message", [
    (lambda: TrainConfig(lr=0), "--lr 0: must be > 0"),
    (lambda: TrainConfig(ema_decay=1.0), "--ema 1: must be in (0, 1)"),
    (lambda: ModelOptions(drop_path_rate=1.0), "--drop-path 1: must be in [0, 1)"),
    (lambda: SearchConfig(budget_flops=4.5e9, finetune_steps=-1), "--finetune-steps -1: must be >= 0"),
    (lambda: SearchConfig(budget_flops=4.5e9, sampler="grid"), "unknown sampler 'grid'"),
    (lambda: SearchConfig(budget_flops=4.5e9, score="accuracy"), "--score accuracy: choose from loss, top1"),
    (lambda: SearchConfig(budget_flops=4.5e9, score="loss", finetune_steps=0), "--score loss with --finetune-steps 0"),
    (lambda: TrialResources(cpus=0), "--cpus-per-trial 0 with no GPU"),
    (lambda: TrialResources(gpus=1.5), "--gpus-per-trial 1.5: above 1"),
    (lambda: SupernetJob(path_sampler="spos", inplace_distill=True), "in-place distillation needs the sandwich"),
    (lambda: RetrainJob({}, init="imagenet"), "--init imagenet"),
])
def test_a_record_out_of_range_cannot_be_made(make, message):
    with pytest.raises(UserError) as err:
        make()
    assert str(err.value).startswith(message)


def test_a_supernet_job_survives_its_file_and_keeps_its_fingerprint():
    job = SupernetJob(train=TrainConfig(epochs=3), path_budget_flops=4.5e9)
    again = SupernetJob.from_dict(json.loads(json.dumps(job.to_dict())))
    assert again == job and again.fingerprint() == job.fingerprint()
    assert "inplace_distill" not in job.to_dict()  # off: left out, as before it existed (the same run folders)
    # the evaluation-only settings never pick another supernet
    assert SupernetJob(train=TrainConfig(epochs=3, recalib_batches=0)).fingerprint() == \
        SupernetJob(train=TrainConfig(epochs=3)).fingerprint()


def test_migrate_brings_old_records_to_todays_format_and_leaves_todays_alone():
    assert DataConfig.from_dict(migrate("data", {"dataset": "mnist", "seed": 3})) == DataConfig(dataset="mnist")
    today = SearchConfig(budget_flops=4.5e9).to_dict()
    old = {k: v for k, v in today.items() if k != "finetune_steps"}
    config = {"search": old, "data": {"dataset": "mnist", "seed": 0}}
    migrated = migrate("search config", config)
    assert migrated["search"]["finetune_steps"] == 0 and "seed" not in migrated["data"]
    assert config["search"] == old  # the input is left as it was
    assert migrate("search config", migrated) == migrated
    assert migrate("suggestion", {"latency_ms": float("nan")})["latency_ms"] is None
    assert migrate("pareto", {})["top1_weights"] == "inherited as they are"
    assert migrate("search state", {"aliases": {}})["told"] == 0
    with pytest.raises(ValueError, match="no file format 'arch'"):
        migrate("arch", {})


def test_records_from_before_the_score_was_chosen_read_as_top1():
    # Searches and checks before --score maximised and ranked by top-1; one from before the fine-tuning steps
    # (finetune_steps 0) must still load, which today's default score would refuse.
    old = {k: v for k, v in SearchConfig(budget_flops=4.5e9, score="top1").to_dict().items()
           if k not in ("score", "finetune_steps")}
    migrated = migrate("search config", {"search": old, "data": {"dataset": "mnist"}})
    assert SearchConfig.from_dict(migrated["search"]) == SearchConfig(budget_flops=4.5e9, score="top1",
                                                                     finetune_steps=0)
    assert migrate("pareto", {"front": []})["score"] == "top1"
    summary = migrate("ranking summary", {"config": {"finetune_steps": 48}})
    assert summary["score"] == "top1" and summary["config"]["score"] == "top1"
    today = {"score": "loss", "config": {"finetune_steps": 48, "score": "loss"}}
    assert migrate("ranking summary", today) == today
    assert SearchConfig(budget_flops=4.5e9).score == "loss"  # and a new search maximises the loss

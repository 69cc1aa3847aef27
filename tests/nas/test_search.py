"""The search at the Python level: Ray Tune + Optuna for real, a failing trial, budgets, the front."""

import pytest

from nas.report import hypervolume, pareto_front
from nas.search import SearchConfig, TrialContext, arch_from_params, evaluate_trial, run_search
from nas.supernet_train import train_supernet
from nas import checkpoint as ckpt
from searchspace import DEPLOYMENT, arch_cost
from tests.nas.test_supernet_train import TINY_DATA, tiny_job

FAILING_MIXER = "window_attention"


def failing_for_attention(config, ctx):
    """A real trial that really fails for one kind of arch (stage 1 window attention)."""
    if config["s1_mixer"] == FAILING_MIXER:
        raise RuntimeError("simulated out-of-memory in this trial")
    evaluate_trial(config, ctx)


@pytest.fixture(scope="module")
def supernet_state(tmp_path_factory):
    path = train_supernet(tiny_job(1), tmp_path_factory.mktemp("supernet"), progress=False)
    return ckpt.load(path)


def test_failing_trials_are_recorded_and_the_search_goes_on(supernet_state, tmp_path):
    budget = 1.6e9
    cfg = SearchConfig(budget_flops=budget, sampler="random", trials=6, seed=3, latency="measure",
                       max_concurrent=2, recalib_batches=1)
    ctx = TrialContext(supernet_state=supernet_state["model"], settings=supernet_state["settings"],
                       space=supernet_state["space"], data=TINY_DATA, config=cfg, fingerprint="t")
    rows, finished = run_search(ctx, tmp_path, trainable=failing_for_attention)
    assert finished
    trials = [r for r in rows if not r["state"].startswith("rejected")]
    assert len(trials) == 6
    failed = [r for r in trials if r["state"] == "error"]
    done = [r for r in trials if r["state"] == "completed"]
    assert failed and done, "the random draw must give both kinds (seeded)"
    assert all(r["stages"][0]["mixer"] == FAILING_MIXER and "simulated out-of-memory" in r["error"] for r in failed)
    assert all(r["stages"][0]["mixer"] != FAILING_MIXER and 0 <= r["top1"] <= 1 for r in done)
    # the budget held: nothing over it ran, and the rejected were over it
    assert all(r["flops"] <= budget for r in trials)
    rejected = [r for r in rows if r["state"] == "rejected_over_budget"]
    assert all(r["flops"] > budget for r in rejected)
    assert all(r["flops"] == arch_cost(arch_from_params({f"s{i+1}_{k}": s[k] for i, s in enumerate(r["stages"])
                                                         for k in s}, 4), DEPLOYMENT).flops for r in done)
    # measured latency is a real positive number
    assert all(r["latency_ms"] > 0 for r in done)


def test_pareto_front_and_hypervolume():
    rows = [{"top1": 0.9, "flops": 4e9, "latency_ms": 10.0}, {"top1": 0.8, "flops": 2e9, "latency_ms": 8.0},
            {"top1": 0.7, "flops": 3e9, "latency_ms": 9.0},  # dominated by the second
            {"top1": 0.85, "flops": 2e9, "latency_ms": 12.0}]
    front = pareto_front(rows)
    assert rows[2] not in front and len(front) == 3
    hv = hypervolume(front, 4.5e9, 20.0)
    assert 0 < hv < 1
    assert hypervolume(front, 4.5e9, 20.0) > hypervolume([rows[2]], 4.5e9, 20.0)
    assert pareto_front([]) == [] and hypervolume([], 1, 1) == 0.0

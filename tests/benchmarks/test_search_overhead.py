"""The in-process baseline of benchmarks/search_overhead.py (also search_quality.py's runner): it must keep
evaluating what ``run_search`` evaluates. It had stopped running when the budget constraints became named
(a dict), unseen because no test ran it."""

import json

import pytest

from benchmarks import search_overhead
from nas.runs import checkpoint as ckpt
from nas.runs.run import Run
from nas.search.driver import run_search
from nas.search.trial import TrialContext
from nas.settings import SearchConfig
from nas.train.supernet import train_supernet
from tests.helpers import run_benchmark, tiny_job


@pytest.fixture(scope="module")
def supernet(tmp_path_factory):
    return train_supernet(tiny_job(1), Run(tmp_path_factory.mktemp("supernet")), progress=False)


@pytest.fixture(scope="module")
def context(supernet):
    state = ckpt.load(supernet)
    cfg = SearchConfig(budget_flops=1.6e9, sampler="random", trials=3, seed=3, latency="measure", max_concurrent=1,
                       recalib_batches=1, finetune_steps=0, score="top1")
    return TrialContext.from_supernet(state, cfg, fingerprint="t")


@pytest.mark.slow
def test_in_process_loop_evaluates_the_archs_the_ray_search_evaluates(context, tmp_path):
    inproc = search_overhead.run_inprocess(context)
    assert inproc["trials"] == 3 and inproc["rejected"] > 0, "half the tiny space is over 1.6 GFLOPs (seeded draw)"
    evaluated = [r for r in inproc["rows"] if r["state"] != "rejected_over_budget"]
    assert all(r["flops"] <= 1.6e9 and 0 <= r["top1"] <= 1 for r in evaluated)
    assert all(r["flops"] > 1.6e9 for r in inproc["rows"] if r["state"] == "rejected_over_budget")

    rows, finished = run_search(context, Run(tmp_path))
    assert finished
    by_ray = [r for r in rows if not r["state"].startswith("rejected")]
    assert [r["arch"] for r in by_ray] == [r["arch"] for r in evaluated]
    assert [r["top1"] for r in by_ray] == pytest.approx([r["top1"] for r in evaluated])


@pytest.mark.slow
def test_the_command_runs_its_cold_in_process_loop_and_ray_from_any_folder(supernet, tmp_path):
    """Its cold baseline runs in a child ``python -m benchmarks.search_overhead``: from the user's folder too."""
    out = tmp_path / "overhead.json"
    done = run_benchmark("search_overhead", "--supernet", str(supernet), "--order", "inproc,ray1", "--trials", "2",
                         "--sampler", "random", "--budget", "1.6GFLOPs", "--cache-dir", str(tmp_path / "latency"),
                         "--work-dir", str(tmp_path / "runs"), "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "reproduce: python -m benchmarks.search_overhead --supernet" in done.stdout
    runs = json.loads(out.read_text())["runs"]
    assert [r["kind"] for r in runs][:1] == ["inproc"] and all(r["trials"] == 2 for r in runs)

"""``--space extended`` through every command that takes ``--space`` (issue #12), as a user runs them."""
import csv
import json

import pytest

from searchspace import DEPLOYMENT, Arch, SearchSpace, arch_cost
from tests.helpers import run_launch

SUPERNET_FLAGS = ["--epochs", "1", "--batch-size", "50", "--train-subset", "1000", "--recalib-batches", "2",
                  "--warmup-epochs", "0"]
EXTENDED_ARCH = {"stages": [
    {"mixer": "linear_angular", "kernel": 3, "depth": 1, "pool": 1},
    {"mixer": "inhomogeneous_dwconv", "kernel": 5, "depth": 2, "pool": 2, "pool_op": "maxpool"},
    {"mixer": "window_attention", "kernel": 7, "depth": 2, "pool": 2},
    {"mixer": "dwconv", "kernel": 3, "depth": 1, "pool": 2, "pool_op": "maxpool"}]}


def test_space_lists_the_extended_choices():
    done = run_launch("space", "--space", "extended")
    assert done.returncode == 0, done.stderr
    assert "43,740,000 archs" in done.stdout
    assert "linear_angular" in done.stdout and "inhomogeneous_dwconv" in done.stdout
    assert "(merge, maxpool)" in done.stdout
    data = json.loads(run_launch("space", "--space", "extended", "--json").stdout)
    assert data["size"] == SearchSpace.builtin("extended").size() == 43_740_000
    assert data["stages"][1]["pool_ops"] == ["merge", "maxpool"] and "pool_ops" not in data["stages"][0]


@pytest.mark.slow
def test_cost_of_an_extended_arch_and_refusals(tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(EXTENDED_ARCH))
    done = run_launch("cost", "--arch", str(path), "--space", "extended", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["flops"] == data["flops_analytic"] == arch_cost(Arch.from_dict(EXTENDED_ARCH), DEPLOYMENT).flops
    # the default space has neither the mixer nor the pool op: exit 2, one line naming what is wrong
    refused = run_launch("cost", "--arch", str(path))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "'linear_angular' is not one of" in refused.stderr
    unknown = run_launch("space", "--space", "extnded")
    assert unknown.returncode == 2 and "neither a built-in space (default, extended, tiny) nor a file" in unknown.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"stages": [{**EXTENDED_ARCH["stages"][0], "pool_op": "maxpool"}]}))
    refused = run_launch("cost", "--arch", str(bad), "--space", "extended")
    assert refused.returncode == 2 and "pool_op 'maxpool' needs pool 2" in refused.stderr


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    work = tmp_path_factory.mktemp("extended")
    trained = run_launch("supernet", "--space", "extended", *SUPERNET_FLAGS, "--run-dir", "sn", cwd=work)
    assert trained.returncode == 0, trained.stderr[-3000:]
    done = run_launch("search", "--space", "extended", "--supernet", "sn/supernet.pt", "--trials", "4",
                      "--latency", "measure", "--search-dir", "results/search-x", *SUPERNET_FLAGS, cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    return work


@pytest.mark.slow
def test_supernet_and_search_over_the_extended_space(searched):
    space = SearchSpace.builtin("extended")
    rows = [r for r in csv.DictReader((searched / "results" / "search-x" / "trials.csv").open())
            if r["state"] == "completed"]
    assert len(rows) == 4
    for r in rows:   # every evaluated arch is of the extended space, within the budget
        arch = space.validate(Arch.from_dict({"stages": json.loads(r["stages"])}))
        assert int(r["flops"]) == arch_cost(arch, DEPLOYMENT).flops <= 4.5e9
    best = json.loads((searched / "results" / "best.json").read_text())
    space.validate(Arch.from_dict(best))


@pytest.mark.slow
def test_retrain_an_extended_arch(searched):
    (searched / "arch.json").write_text(json.dumps(EXTENDED_ARCH))
    done = run_launch("retrain", "--arch", "arch.json", "--space", "extended", "--epochs", "1", "--batch-size", "50",
                      "--train-subset", "1000", "--warmup-epochs", "0", "--run-dir", "rt", cwd=searched)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((searched / "rt" / "metrics.json").read_text())
    assert metrics["name"] == Arch.from_dict(EXTENDED_ARCH).key() == "la3x1p1-id5x2p2mp-wa7x2p2-dw3x1p2mp"
    assert 0 <= metrics["test_top1"] <= 1


@pytest.mark.slow
def test_retrain_of_the_searched_best_takes_the_search_space(searched):
    """No --space: the arch of an extended search is checked against the space the search recorded."""
    done = run_launch("retrain", "--arch", "results/best.json", "--epochs", "1", "--batch-size", "50",
                      "--warmup-epochs", "0", "--run-dir", "rt-best", cwd=searched)
    assert done.returncode == 0, done.stderr[-3000:]
    best = Arch.from_dict(json.loads((searched / "results" / "best.json").read_text()))
    assert json.loads((searched / "rt-best" / "metrics.json").read_text())["name"] == best.key()
    # an explicit --space still wins: the default space refuses an extended arch of that search
    (searched / "ext-best.json").write_text(json.dumps({**json.loads((searched / "results" / "best.json").read_text()),
                                                         "stages": EXTENDED_ARCH["stages"]}))
    refused = run_launch("retrain", "--arch", "ext-best.json", "--space", "default", "--epochs", "1", cwd=searched)
    assert refused.returncode == 2 and "'linear_angular' is not one of" in refused.stderr

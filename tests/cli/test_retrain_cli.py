"""``launch.py retrain`` and ``launch.py export`` as a user runs them."""
import csv
import json
import re

import numpy as np
import onnxruntime as ort
import pytest
import torch

from nas.hub import load_model
from nas.runs import checkpoint as ckpt
from searchspace import DEPLOYMENT, SearchSpace, arch_cost, save_arch_file
from tests.helpers import ARCH, TINY_SPACE, run_launch

pytestmark = pytest.mark.slow  # every test here runs launch.py with training or Ray

FAST = ["--epochs", "1", "--batch-size", "50", "--train-subset", "1000", "--warmup-epochs", "0"]


@pytest.fixture
def work(tmp_path):
    (tmp_path / "space.json").write_text(json.dumps(TINY_SPACE))
    (tmp_path / "results").mkdir()
    return tmp_path


def test_retrain_then_export(work):
    search_run = work / "results" / "search-x"
    search_run.mkdir()
    budget = arch_cost(ARCH, DEPLOYMENT).flops - 1  # searched under a budget it now exceeds: a warning
    save_arch_file(work / "results" / "best.json", ARCH, search={"run": str(search_run), "budget_flops": budget})
    done = run_launch("retrain", "--arch", "results/best.json", "--space", "space.json", *FAST, cwd=work)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning: results/best.json" in done.stderr and "over the" in done.stderr
    assert "test top-1" in done.stdout and "epoch 1 | loss" in done.stdout
    run = search_run / "retrain"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["name"] == ARCH.key() and 0 <= metrics["test_top1"] <= 1
    assert metrics["config"]["job"]["train"]["epochs"] == 1
    assert metrics["config"]["job"]["data"]["dataset"] == "mnist-cluttered"  # the default task

    onnx_file = work / "onnx" / "model.onnx"
    exported = run_launch("export", "--run", str(run), "--onnx", str(onnx_file), cwd=work)
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert "matches PyTorch" in exported.stdout
    assert re.search(r"latency here: [0-9.]+ ms in torch \(\d+ threads, batch 1\)", exported.stdout)
    # regression: the weights sat beside the file, in a data file named after its temp path; the .onnx alone,
    # as a user ships it, did not load. Now it is the only file written, and it loads from anywhere.
    assert [p.name for p in onnx_file.parent.iterdir()] == ["model.onnx"]
    shipped = work / "shipped.onnx"
    shipped.write_bytes(onnx_file.read_bytes())
    # and independently: onnxruntime's output equals PyTorch's within 1e-4
    net = load_model(run)
    x = torch.randn(1, 1, 32, 32)
    got = ort.InferenceSession(str(shipped)).run(None, {"image": x.numpy()})[0]
    assert np.abs(got - net(x).detach().numpy()).max() <= 1e-4

    # a search that predicted with an ONNX Runtime table (its copy sits in the search folder): the latency is
    # measured in ONNX Runtime, with that table's threads, on the exported file
    from nas.latency.table import LatencyTable
    LatencyTable({}, space=SearchSpace.from_dict(TINY_SPACE), settings=DEPLOYMENT, device="onnxruntime-cpu-box-t1-b1",
                 batch_size=1, backend="onnxruntime", meta={"threads": 1}).save(search_run / "latency_table.json")
    again = run_launch("export", "--run", str(run), "--onnx", str(onnx_file), cwd=work)
    assert again.returncode == 0, again.stderr[-2000:]
    assert re.search(r"latency here: [0-9.]+ ms in onnxruntime \(1 threads, batch 1\)", again.stdout)

    # an opset the network cannot be converted to, or one onnx does not know: one line, nothing written
    for opset, message in (("17", "--opset 17: these networks export at opset 18 or above"),
                           ("999", "--opset 999: onnx")):
        refused = run_launch("export", "--run", str(run), "--onnx", str(work / "other.onnx"), "--opset", opset, cwd=work)
        assert refused.returncode == 2 and refused.stderr.startswith(f"error: {message}"), refused.stderr[-2000:]
        assert len(refused.stderr.strip().splitlines()) == 1
    assert not list(work.glob("*other.onnx*"))


def test_retrain_on_the_plain_digits(work):
    save_arch_file(work / "arch.json", ARCH)
    done = run_launch("retrain", "--arch", "arch.json", "--space", "space.json", "--dataset", "mnist",
                      "--run-dir", "plain", *FAST, cwd=work)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((work / "plain" / "metrics.json").read_text())
    assert metrics["config"]["job"]["data"]["dataset"] == "mnist"
    assert metrics["test_top1"] > 0.3  # one epoch of 1,000 plain digits is well above chance (0.1)


def test_retrain_the_top_k_of_a_front(work):
    other = ARCH.to_dict()
    other["stages"][2]["mixer"] = "dwconv"
    pareto = {"front": [{"stages": ARCH.to_dict()["stages"], "top1": 0.6, "flops": 1.5e9, "latency_ms": 30.0},
                        {"stages": other["stages"], "top1": 0.5, "flops": 1.4e9, "latency_ms": 25.0},
                        {"stages": other["stages"], "top1": 0.1, "flops": 1.3e9, "latency_ms": 20.0}],
              "top1_weights": "inherited, then 7 fine-tuning steps alone on the train split"}
    (work / "results" / "pareto.json").write_text(json.dumps(pareto))
    done = run_launch("retrain", "--pareto", "results/pareto.json", "--top-k", "2", "--space", "space.json", *FAST,
                      cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    base = work / "results" / "retrain-top2"
    rows = list(csv.DictReader((base / "front_retrained.csv").open()))
    assert [float(r["estimated_top1"]) for r in rows] == [0.6, 0.5]
    assert all(0 <= float(r["retrained_top1"]) <= 1 for r in rows)
    assert (base / "front_retrained.png").read_bytes()[:4] == b"\x89PNG"
    assert "Kendall tau" in done.stdout
    # the estimates are labelled with the weights the search scored them with (not always "inherited")
    splits = json.loads((base / "front_retrained.json").read_text())["splits"]
    assert splits["estimated_top1"] == "validation, supernet weights " + pareto["top1_weights"]
    assert pareto["top1_weights"] in done.stdout
    # what is reported is what model.pt holds, on the test split (issue #11 item 4: with --ema it was not)
    for r in rows:
        assert float(r["retrained_top1"]) == ckpt.load(base / r["arch"] / "model.pt")["test_top1"]

    # regression: issue #11 item 4 -- the members' folders were resumed whatever settings they had been started with
    other_recipe = [a if a != "1" else "2" for a in FAST]
    again = run_launch("retrain", "--pareto", "results/pareto.json", "--top-k", "2", "--space", "space.json",
                       *other_recipe, cwd=work)
    assert again.returncode == 2 and "resuming with different settings" in again.stderr, again.stderr[-2000:]
    assert len(again.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--arch", "missing.json"], "missing.json: no such file"),
    (["--arch", "bad.json"], "bad.json: invalid JSON"),
    (["--arch", "outside.json"], "outside.json: stage 1: field 'kernel': 9 is not one of [3, 5]"),
    (["--arch", "arch.json", "--dataset", "cifar10", "--data-root", "/no/cifar"], "/no/cifar"),
    (["--pareto", "missing.json"], "missing.json: no such file"),
    (["--arch", "arch.json", "--init", "supernet"], "--init supernet"),
    (["--arch", "arch.json", "--init", "supernet", "--supernet", "arch.json"], "arch.json: not a readable checkpoint"),
    (["--pareto", "pareto.json", "--init", "supernet"], "--init supernet: no supernet named"),
    (["--arch", "arch.json", "--amp", "fp16"], "--amp fp16 is for GPU training"),
    (["--arch", "arch.json", "--amp", "fp8"], "invalid choice: 'fp8'"),
])
def test_retrain_bad_input(work, args, message):
    (work / "bad.json").write_text("{")
    outside = ARCH.to_dict()
    outside["stages"][0]["kernel"] = 9
    (work / "outside.json").write_text(json.dumps(outside))
    save_arch_file(work / "arch.json", ARCH)
    (work / "pareto.json").write_text(json.dumps({"front": [{"stages": ARCH.to_dict()["stages"], "top1": 0.5,
                                                             "flops": 1.4e9}]}))  # no supernet named
    done = run_launch("retrain", "--space", "space.json", *args, cwd=work)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_export_bad_input(work):
    done = run_launch("export", "--run", "nowhere", "--onnx", "m.onnx", cwd=work)
    assert done.returncode == 2 and "nowhere: no retrained model here" in done.stderr


def test_the_readme_install_brings_what_export_needs():
    # regression: issue #11 item 6 -- `pip install -e .` (the README's install) lacked onnx/onnxruntime, so the
    # README's export line failed for a user who followed it
    import importlib.metadata
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "pip install -e . && python launch.py search" in readme
    assert "python launch.py export --run results/<run>/retrain --onnx model.onnx" in readme
    unconditional = {re.split(r"[<>=!~\[; ]", r)[0].lower() for r in importlib.metadata.requires("mixernas")
                     if "extra ==" not in r}
    assert {"onnx", "onnxruntime", "onnxscript"} <= unconditional

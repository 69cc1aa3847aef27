"""Latency where the model will run, through launch.py: a table built with each backend, a search that predicts
with a table built on another machine (another folder here), the refusal of a table that does not fit the search,
and check-latency's report."""
from __future__ import annotations

import csv
import json

import pytest

from searchspace import DEPLOYMENT, SearchSpace
from tests.helpers import SUPERNET_FLAGS, run_launch

pytestmark = pytest.mark.slow  # every test here times networks at the deployment setting or trains a supernet

QUICK = ["--space", "tiny", "--warmup", "0", "--repeats", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def deployment_box(tmp_path_factory):
    """The machine the model will run on: a torch table built there."""
    box = tmp_path_factory.mktemp("edge-box")
    done = run_launch("latency-table", "--out", "table.json", *QUICK, cwd=box)
    assert done.returncode == 0, done.stderr[-3000:]
    return box


def test_a_torch_table_describes_itself(deployment_box):
    data = json.loads((deployment_box / "table.json").read_text())
    assert data["backend"] == "torch" and data["batch_size"] == 1 and data["device"].endswith("-t1-b1")
    assert data["meta"]["threads"] == 1 and data["meta"]["processor"] and data["meta"]["software"]["torch"]
    assert SearchSpace.from_dict(data["space"]) == SearchSpace.builtin("tiny")
    assert data["settings"] == DEPLOYMENT.to_dict()
    assert data["entries"] and all(v > 0 for v in data["entries"].values())
    assert len(data["meta"]["calibration"]) == 3 and data["scale"] > 0
    assert not [p for p in deployment_box.iterdir() if p.name != "table.json"]  # written atomically, nothing else


def test_an_onnxruntime_table_times_exported_components(tmp_path):
    done = run_launch("latency-table", "--out", "ort.json", "--backend", "onnxruntime", *QUICK, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((tmp_path / "ort.json").read_text())
    assert data["backend"] == "onnxruntime" and data["device"].startswith("onnxruntime-cpu-")
    assert data["meta"]["software"]["onnxruntime"] and data["meta"]["method"] == "eager"
    torch_table = run_launch("latency-table", "--out", "torch.json", *QUICK, cwd=tmp_path)
    assert torch_table.returncode == 0, torch_table.stderr[-3000:]
    assert json.loads((tmp_path / "torch.json").read_text())["entries"].keys() == data["entries"].keys()
    assert "onnxruntime" in done.stdout and "check-latency --table ort.json" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--backend", "onnxruntime", "--device", "cuda"], "--backend onnxruntime times ONNX Runtime's CPU execution"),
    (["--batch", "0"], "--batch 0: must be >= 1"),
    (["--threads", "0"], "--threads 0: must be >= 1"),
    (["--backend", "tensorrt"], "invalid choice: 'tensorrt'"),
])
def test_bad_table_flags_exit_2_in_one_line(tmp_path, args, message):
    done = run_launch("latency-table", "--out", "t.json", *args, cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t.json").exists()


@pytest.fixture(scope="module")
def foreign_table(deployment_box):
    """The table as another machine wrote it: another device name, and entries unlike anything timed here."""
    data = json.loads((deployment_box / "table.json").read_text())
    data["device"], data["meta"]["processor"] = "cpu-edge-box-t1-b1", "Edge Box CPU"
    data["entries"] = {key: value * 10 for key, value in data["entries"].items()}
    path = deployment_box / "foreign.json"
    path.write_text(json.dumps(data))
    return path


def test_a_search_predicts_with_a_table_built_elsewhere_and_says_whose_it_is(tmp_path, foreign_table):
    from nas.latency.table import LatencyTable
    from searchspace import Arch

    done = run_launch("search", "--space", "tiny", "--budget", "1.6GFLOPs", *SUPERNET_FLAGS, "--train-all-paths",
                      "--trials", "3", "--finetune-steps", "2", "--search-dir", "s", "--latency-table",
                      str(foreign_table), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"latency axis: cpu-edge-box-t1-b1 (torch, Edge Box CPU, batch 1), from {foreign_table}" in done.stdout
    table = LatencyTable.load(foreign_table)
    run = tmp_path / "s"
    assert LatencyTable.load(run / "latency_table.json").entries == table.entries  # the run keeps its own copy
    assert not (tmp_path / "results" / "latency").exists()  # nothing measured here
    rows = list(csv.DictReader((run / "trials.csv").open()))
    completed = [r for r in rows if r["state"] == "completed"]
    assert len(completed) == 3
    for r in completed:
        arch = Arch.from_dict({"stages": json.loads(r["stages"])})
        assert float(r["latency_ms"]) == pytest.approx(table.predict(arch) * 1e3)
        assert r["latency_on"].startswith("cpu-edge-box-t1-b1 (torch")
    assert json.loads((run / "pareto.json").read_text())["latency_on"].startswith("cpu-edge-box-t1-b1")


@pytest.mark.parametrize("args, message", [
    (["--space", "default"], "measured for another search space than this search's"),
    (["--space", "tiny", "--latency-batch", "4"], "measured at batch 1 (cpu-edge-box-t1-b1), the search asks for "
                                                  "--latency-batch 4"),
    (["--space", "tiny", "--latency", "measure"], "--latency-table with --latency measure"),
])
def test_a_table_that_does_not_fit_the_search_is_refused_before_any_work(tmp_path, foreign_table, args, message):
    done = run_launch("search", "--budget", "4.5GFLOPs", "--latency-table", str(foreign_table), *args, cwd=tmp_path,
                      timeout=120)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "results").exists()


def test_check_latency_reports_the_error_beside_the_noise_floor(deployment_box, tmp_path):
    done = run_launch("check-latency", "--table", str(deployment_box / "table.json"), "--archs", "2", "--budget",
                      "2GFLOPs", "--warmup", "0", "--repeats", "2", "--out-dir", str(tmp_path / "check"),
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "check" / "check-latency.json").read_text())
    summary, rows = report["summary"], report["rows"]
    assert len(rows) == 2 and summary["backend"] == "torch" and "evenly spaced FLOPs quantiles" in summary["rule"]
    for r in rows:
        assert r["error_pct"] == pytest.approx(100 * (r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"])
        assert r["noise_pct"] == pytest.approx(100 * (r["remeasured_ms"] - r["measured_ms"]) / r["measured_ms"])
    errors = sorted(abs(r["error_pct"]) for r in rows)
    assert summary["median_abs_error_pct"] == pytest.approx(sum(errors) / 2)
    assert (tmp_path / "check" / "check-latency.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "check" / "check-latency.csv").read_text().count("\n") == 3
    assert "error of the table: median" in done.stdout


def test_check_latency_refuses_a_table_measured_on_another_machine(foreign_table, tmp_path):
    done = run_launch("check-latency", "--table", str(foreign_table), "--out-dir", str(tmp_path / "c"), cwd=tmp_path,
                      timeout=300)
    assert done.returncode == 2 and "was measured as cpu-edge-box-t1-b1; this machine is" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1

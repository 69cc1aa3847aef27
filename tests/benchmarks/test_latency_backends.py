"""benchmarks/latency_backends.py: both backends' tables against whole networks in their own backend, side by side."""
import json
import statistics

import pytest

from tests.helpers import run_benchmark


@pytest.mark.slow
def test_both_tables_are_checked_on_the_same_archs_and_the_backends_compared(tmp_path):
    done = run_benchmark("latency_backends", "--space", "tiny", "--archs", "2", "--budget", "2GFLOPs", "--threads",
                         "1", "--warmup", "0", "--repeats", "2", "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "latency_backends-t1-seed0.json").read_text())
    summary, rows = report["summary"], report["rows"]
    assert len(rows) == 2 and summary["threads"] == 1
    for r in rows:
        assert r["onnxruntime_over_torch"] == pytest.approx(r["onnxruntime_measured_ms"] / r["torch_measured_ms"])
        for backend in ("torch", "onnxruntime"):
            assert r[f"{backend}_error_pct"] == pytest.approx(
                100 * (r[f"{backend}_predicted_ms"] - r[f"{backend}_measured_ms"]) / r[f"{backend}_measured_ms"])
    assert summary["median_onnxruntime_over_torch"] == pytest.approx(
        statistics.median(r["onnxruntime_over_torch"] for r in rows))
    for backend in ("torch", "onnxruntime"):
        table = json.loads((tmp_path / f"latency_backends-{backend}-table.json").read_text())
        assert table["backend"] == backend and summary[backend]["scale"] == pytest.approx(table["scale"])
    assert "onnxruntime / torch whole-network latency" in done.stdout

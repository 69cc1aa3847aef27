"""benchmarks/latency_table.py: the table's errors on archs it did not calibrate on, beside a second measurement."""
import json

import pytest

from tests.helpers import run_benchmark

# Eight archs at the deployment setting, each component a few milliseconds: the whole script runs in seconds.
SMALL_SPACE = {"stages": [
    {"mixers": ["dwconv"], "kernels": [3], "depths": [1], "pools": [1]},
    {"mixers": ["dwconv"], "kernels": [3], "depths": [1, 2], "pools": [2]},
    {"mixers": ["dwconv", "window_attention"], "kernels": [3], "depths": [1], "pools": [2]},
    {"mixers": ["dwconv"], "kernels": [3, 5], "depths": [1], "pools": [2]}]}


@pytest.mark.slow
def test_reports_the_error_beside_the_measurements_own_spread(tmp_path):
    (tmp_path / "space.json").write_text(json.dumps(SMALL_SPACE))
    args = ["--space", str(tmp_path / "space.json"), "--archs", "2", "--seed", "3", "--max-gflops", "0",
            "--warmup", "1", "--repeats", "2", "--threads", "1", "--cache-dir", str(tmp_path / "cache"),
            "--out-dir", str(tmp_path / "out")]
    done = run_benchmark("latency_table", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(next((tmp_path / "out").glob("latency_table-*-seed3.json")).read_text())
    summary, rows = data["summary"], data["rows"]
    table = json.loads(next((tmp_path / "cache").glob("*.json")).read_text())
    assert len(rows) == 2 and not {r["arch"] for r in rows} & {c["arch"] for c in table["meta"]["calibration"]}
    for r in rows:
        first = r["measured_ms"]
        assert first > 0 and r["remeasured_ms"] > 0
        assert r["remeasure_diff_pct"] == pytest.approx(100 * (r["remeasured_ms"] - first) / first)
        assert r["error_pct"] == pytest.approx(100 * (r["predicted_ms"] - first) / first)
    assert summary["median_abs_remeasure_diff_pct"] == pytest.approx(
        sum(abs(r["remeasure_diff_pct"]) for r in rows) / 2)  # the median of two
    assert "of the table / of a second measurement" in done.stdout

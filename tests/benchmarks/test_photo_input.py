"""benchmarks/photo_input.py: both input paths of an image folder through the real Trainer, side by side."""
import pytest
import json
import subprocess
import sys

from tests.helpers import ROOT
from tests.image_folders import write_image_folder


@pytest.mark.slow
def test_both_paths_train_an_epoch_and_the_ratio_is_written(tmp_path):
    root = write_image_folder(tmp_path / "photos", {"cat": (40, 2), "dog": (40, 2)})
    out = tmp_path / "bench" / "photo_input"
    done = subprocess.run([sys.executable, "-m", "benchmarks.photo_input", "--data-root", str(root),
                           "--train-subset", "64", "--rounds", "1", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.with_suffix(".json").read_text())
    rows = {r["input"]: r for r in result["rows"]}
    assert set(rows) == {"file by file", "in memory"} and all(r["epoch_images"] == 64 for r in rows.values())
    assert result["summary"]["ratio"] == rows["in memory"]["ratio"]
    measured = rows["in memory"]["images_per_s"] / rows["file by file"]["images_per_s"]
    assert abs(result["summary"]["ratio"] - measured) < 0.01 * measured  # the rows are rounded to 0.1 images/s
    assert "x (in-memory data ready in" in done.stdout


@pytest.mark.slow
def test_a_missing_folder_exits_2_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.photo_input", "--data-root", str(tmp_path / "none")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "no such directory" in done.stderr

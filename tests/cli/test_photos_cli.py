"""Image folders of photos through ``launch.py``, as a user runs them: decoded once and trained in memory, a folder
that cannot be learned refused in one line before training, unreadable files counted in one line."""
from __future__ import annotations

import json

import pytest

from searchspace import save_arch_file
from tests.helpers import ARCH, run_launch
from tests.image_folders import write_image_folder, write_unreadable

pytestmark = pytest.mark.slow  # every test here runs launch.py with training or Ray

FAST = ["--epochs", "1", "--batch-size", "8", "--warmup-epochs", "0", "--img-size", "32"]


@pytest.fixture
def work(tmp_path):
    save_arch_file(tmp_path / "arch.json", ARCH)
    return tmp_path


def _retrain(work, root, *extra):
    return run_launch("retrain", "--arch", "arch.json", "--dataset", "imagefolder", "--data-root", str(root),
                      "--run-dir", str(work / "run"), *FAST, *extra, cwd=work,
                      env={"MIXERNAS_CACHE": str(work / "cache")})


@pytest.mark.parametrize("layout, message", [
    ({"cat": (8, 2), "dog": (0, 2)}, "class folder 'dog' has no images"),
    ({"cat": (8, 2)}, "only one class ('cat')"),
])
def test_a_folder_that_cannot_be_learned_exits_2_in_one_line_before_training(work, layout, message):
    root = write_image_folder(work / "photos", layout)
    done = _retrain(work, root)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines() == [done.stderr.strip()] and message in done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert "epoch 1" not in done.stdout and not (work / "run" / "checkpoint.pt").exists()


def test_photos_train_in_memory_and_unreadable_files_are_one_line(work):
    root = write_image_folder(work / "photos", {"cat": (16, 4), "dog": (16, 4), "emu": (16, 4)})
    for i in range(3):
        write_unreadable(root / "train" / "emu" / f"broken{i}.jpg")
    done = _retrain(work, root)
    assert done.returncode == 0, done.stderr[-2000:]
    unreadable = [line for line in done.stdout.splitlines() if "could not be read" in line]
    assert len(unreadable) == 1 and "3 of 63 image files" in unreadable[0], done.stdout[-2000:]
    assert "decoding 63 images to 32 px (once)" in done.stdout
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    assert metrics["config"]["job"]["data"]["dataset"] == "imagefolder" and 0 <= metrics["test_top1"] <= 1
    assert list((work / "cache" / "images").glob("photos-32px-*.npz"))  # decoded once, kept for the next run
    again = _retrain(work, root, "--seed", "1", "--run-dir", str(work / "run2"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "decoding" not in again.stdout  # read from the cache
    assert sum("could not be read" in line for line in again.stdout.splitlines()) == 1

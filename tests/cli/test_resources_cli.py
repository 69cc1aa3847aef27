"""Resources this machine does not have: one line and exit 2 before any work, never a traceback or a trial that
waits forever for a GPU (a local Ray keeps such a trial pending without end)."""
import os

import pytest
import torch

from searchspace import save_arch_file
from tests.helpers import ARCH, run_launch

pytestmark = pytest.mark.slow  # every test here runs launch.py with training or Ray


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", [["supernet"], ["retrain", "--arch", "arch.json"]])
def test_gpu_training_without_cuda_is_refused_before_anything_is_written(tmp_path, command):
    # regression: "RuntimeError: Found no NVIDIA driver on your system", a traceback after the run folder was made
    save_arch_file(tmp_path / "arch.json", ARCH)
    done = run_launch(*command, "--gpu", "--train-subset", "100", "--epochs", "1", "--run-dir", "run", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        "error: --gpu: torch sees no CUDA device on this machine; leave --gpu out to train on the CPU"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag, value, message", [
    ("--gpus-per-trial", torch.cuda.device_count() + 1, "CUDA devices on this machine, so no trial could start"),
    ("--cpus-per-trial", (os.cpu_count() or 1) + 1, "CPUs, so no trial could start"),
])
def test_a_trial_bigger_than_this_machine_is_refused_before_the_supernet_trains(tmp_path, flag, value, message):
    # regression: --gpus-per-trial 1 on a machine without a GPU trained the supernet, then waited forever
    done = run_launch("search", flag, str(value), "--search-dir", "s", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr
    assert not (tmp_path / "s").exists() and not (tmp_path / "results" / "supernet").exists()

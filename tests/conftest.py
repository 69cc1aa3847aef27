"""Shared fixtures: tiny settings and spaces so the whole suite runs in minutes on 2 cores."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from searchspace import SMALL, Arch, NetSettings, SearchSpace

ROOT = Path(__file__).resolve().parents[1]

# Deployment resolution (224 px, so the same window padding and clamping cases), width cut to 32:
# fvcore runs fast and every shape rule of DEPLOYMENT is exercised.
NARROW_DEPLOYMENT = NetSettings(embed_dim=32, num_classes=10)
TINY = SMALL  # 32 px, 1 channel, C = 16, patch 2


def swin_t_arch(mixer: str = "window_attention", kernel: int = 7) -> Arch:
    return Arch.from_dict({"stages": [
        {"mixer": mixer, "kernel": kernel, "depth": d, "pool": p} for d, p in ((2, 1), (2, 2), (6, 2), (2, 2))]})


def briefly_trained_supernet(space: SearchSpace, steps: int = 6):
    """A supernet over ``space`` whose weights and BatchNorm statistics are not at their init values."""
    import random

    import torch

    from supernet import MixerNet

    torch.manual_seed(0)
    net = MixerNet(space, TINY)
    rng = random.Random(0)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    for _ in range(steps):
        net.set_active(space.sample(rng))
        opt.zero_grad()
        net(torch.randn(8, 1, 32, 32)).logsumexp(1).mean().backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """The tests' own machine cache (storage mirrors, decoded image folders), never the user's home: also for the
    launch.py processes they start, which inherit it. A test may still point MIXERNAS_CACHE elsewhere."""
    previous = os.environ.get("MIXERNAS_CACHE")
    os.environ["MIXERNAS_CACHE"] = str(tmp_path_factory.mktemp("mixernas-cache"))
    yield
    if previous is None:
        os.environ.pop("MIXERNAS_CACHE", None)
    else:
        os.environ["MIXERNAS_CACHE"] = previous


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace.default()


def run_launch(*args: str, cwd: Path | None = None, timeout: float = 1800, env: dict | None = None
               ) -> subprocess.CompletedProcess:
    """Run ``python launch.py ARGS`` as a user would and capture its output.

    The timeout only guards against a hang: on a machine busy with another job these commands run several times
    slower than alone (the longest, about 4 minutes alone on 2 cores, ran past 600 s there)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], cwd=cwd or ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)

"""What several test modules share: the tiny settings, space, data and arch that let the whole suite run in
minutes on 2 cores, small networks, and running ``launch.py`` as a user does. Fixtures live in conftest.py."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.bench_common import ROOT, TINY_BUDGET, TINY_SUPERNET_FLAGS, run_launch
from nas.runs import checkpoint as ckpt
from nas.settings import DataConfig, SupernetJob, TrainConfig
from searchspace import SMALL, Arch, NetSettings, SearchSpace, StageChoice
from supernet import MixerNet

__all__ = ["ROOT", "run_launch"]  # re-exported: the one way to run launch.py, shared with the benchmarks

# Deployment resolution (224 px, so the same window padding and clamping cases), width cut to 32:
# fvcore runs fast and every shape rule of DEPLOYMENT is exercised.
NARROW_DEPLOYMENT = NetSettings(embed_dim=32, num_classes=10)
TINY = SMALL  # 32 px, 1 channel, C = 16, patch 2

# The built-in tiny space: an epoch on the 1,000 training digits of TINY_DATA takes seconds on one core.
TINY_SPACE = SearchSpace.builtin("tiny").to_dict()
TINY_DATA = DataConfig("mnist", train_subset=1000)  # plain digits: a tiny run learns them in 2 epochs

# One arch of the tiny space with every mixer in it.
ARCH = Arch((StageChoice("dwconv", 3, 1, 1), StageChoice("dynamic_dwconv", 3, 1, 2),
             StageChoice("window_attention", 3, 2, 2), StageChoice("dwconv", 3, 1, 2)))

# launch.py flags for a supernet of the tiny space on TINY_DATA in about 20 s, and a budget some of its archs are over.
SUPERNET_FLAGS, BUDGET = TINY_SUPERNET_FLAGS, TINY_BUDGET

RECIPE = TrainConfig(batch_size=50, lr=3e-3)


def tiny_job(epochs: int, sampler: str = "spos", **fields) -> SupernetJob:
    return SupernetJob(data=TINY_DATA, train=TrainConfig(epochs=epochs, batch_size=50, recalib_batches=2,
                                                         warmup_epochs=0, lr=3e-3),
                       path_sampler=sampler, space=SearchSpace.from_dict(TINY_SPACE), **fields)


def save_untrained_supernet(path) -> None:
    """A supernet.pt of ``tiny_job`` as train_supernet writes it, untrained: for what reads only its record."""
    settings = NetSettings(img_size=32, in_chans=1, num_classes=10, embed_dim=16, patch_size=2)
    net = MixerNet(SearchSpace.from_dict(TINY_SPACE), settings)
    ckpt.save_atomic({"model": net.state_dict(), "space": TINY_SPACE, "settings": settings.to_dict(),
                      "job": tiny_job(1).to_dict(), "history": []}, path)


def swin_t_arch(mixer: str = "window_attention", kernel: int = 7) -> Arch:
    return Arch.from_dict({"stages": [
        {"mixer": mixer, "kernel": kernel, "depth": d, "pool": p} for d, p in ((2, 1), (2, 2), (6, 2), (2, 2))]})


def briefly_trained_supernet(space: SearchSpace, steps: int = 6) -> MixerNet:
    """A supernet over ``space`` whose weights and BatchNorm statistics are not at their init values."""
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


def assert_random_paths_extract_exactly(supernet: MixerNet, seed: int, count: int) -> None:
    rng = random.Random(seed)
    x = torch.randn(3, 1, 32, 32)
    for _ in range(count):
        arch = supernet.space.sample(rng)
        supernet.set_active(arch)
        with torch.no_grad():
            torch.testing.assert_close(supernet.extract(arch).eval()(x), supernet(x), rtol=0, atol=1e-5)


def conv_bn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Dropout(0.9), nn.BatchNorm2d(4))  # dropout must stay off


def params_seen_by_each_forward(net: nn.Module) -> list[list[torch.Tensor]]:
    """A list that fills, at every forward of ``net``, with its parameters then: forward k sees those after step k-1."""
    seen = []
    net.register_forward_pre_hook(lambda module, args: seen.append([p.detach().clone() for p in module.parameters()]))
    return seen


def running_cluster(**head_options):
    """A generator for a pytest fixture: a RayHead that is up, stopped after the tests; every process of the cluster
    must be gone then. A missing `ray` command fails the test: the cluster tests never pass by skipping."""
    import pytest

    from benchmarks.ray_cluster import RayHead, ray_executable

    head = RayHead(ray_executable(), **head_options)
    try:
        try:
            head.wait_until_up()
        except RuntimeError as e:
            pytest.fail(str(e))
        yield head
    finally:
        _, started, left = head.stop()
    assert started > 0 and not left, f"{len(left)} of the {started} processes of the cluster outlived it: {left}"



def run_benchmark(module: str, *args: str, cwd: Path | None = None, timeout: float = 600
                  ) -> subprocess.CompletedProcess:
    """Run ``python -m benchmarks.<module> ARGS`` of this checkout as a user does from its root, here from ``cwd``."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=cwd or ROOT,
                          env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, timeout=timeout)


class S3Server:
    """moto's standalone S3 server (real HTTP on 127.0.0.1), started here and stopped after: a live S3 endpoint for
    the storage tests. ``uri(bucket)`` names a prefix in it the way pyarrow (and so ``--storage``) takes it."""

    def __init__(self) -> None:
        import socket
        import urllib.request

        server = Path(sys.executable).with_name("moto_server")
        if not server.is_file():
            raise RuntimeError(f"no moto_server beside {sys.executable}: pip install -e '.[test]'")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.process = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"moto_server did not answer on port {self.port}")
                time.sleep(0.2)

    def uri(self, bucket: str, prefix: str = "runs") -> str:
        return (f"s3://{bucket}/{prefix}?endpoint_override=http://127.0.0.1:{self.port}&scheme=http"
                f"&region=us-east-1&allow_bucket_creation=true")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class StoredRuns:
    """What a storage URI holds (file:// or s3://), read through pyarrow as the product wrote it."""

    def __init__(self, uri: str) -> None:
        import pyarrow.fs

        self.fs, self.base = pyarrow.fs.FileSystem.from_uri(uri)
        self.base = self.base.rstrip("/")

    def files(self) -> list[str]:
        """Every file under the URI, relative to it (POSIX)."""
        import pyarrow.fs

        infos = self.fs.get_file_info(pyarrow.fs.FileSelector(self.base, recursive=True, allow_not_found=True))
        return sorted(i.path[len(self.base) + 1:] for i in infos if i.type == pyarrow.fs.FileType.File)

    def listing(self, folder: str) -> list[str]:
        """The files directly in ``folder`` (relative to the URI), relative to the URI: one cheap call."""
        import pyarrow.fs

        infos = self.fs.get_file_info(pyarrow.fs.FileSelector(f"{self.base}/{folder}", allow_not_found=True))
        return sorted(i.path[len(self.base) + 1:] for i in infos if i.type == pyarrow.fs.FileType.File)

    def glob(self, pattern: str) -> list[str]:
        import fnmatch

        return [f for f in self.files() if fnmatch.fnmatch(f, pattern)]

    def read_bytes(self, relative: str) -> bytes:
        with self.fs.open_input_stream(f"{self.base}/{relative}") as f:
            return f.read()

    def read_text(self, relative: str) -> str:
        return self.read_bytes(relative).decode()

    def write_bytes(self, relative: str, data: bytes) -> None:
        with self.fs.open_output_stream(f"{self.base}/{relative}") as out:
            out.write(data)

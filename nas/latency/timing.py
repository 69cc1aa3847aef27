"""How a call is timed on a device, and the lock that keeps timings of one device apart.

``timing_method``: on CUDA a captured CUDA graph is replayed, as a latency-bound GPU deployment runs a network
(eager PyTorch at batch 1 measures kernel launches more than kernels); elsewhere the module runs eagerly.
``device_lock`` keeps ``--latency measure`` trials from timing a network while another trial's work runs on the
same device.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from searchspace import NetSettings


def as_device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


METHODS = ("eager", "cuda-graph")


def timing_method(device: str | torch.device) -> str:
    """How a device is timed: CUDA replays a captured CUDA graph (how a latency-bound GPU deployment runs a
    network: at batch 1 eager PyTorch spends most of its time launching kernels, and one run's launch overhead
    varied threefold between runs); other devices run the module eagerly."""
    return "cuda-graph" if as_device(device).type == "cuda" else "eager"


def prepare_call(fn: Callable[[], Any], device: str | torch.device, method: str | None = None,
                 warmup: int = 3, pool=None) -> Callable[[], Any]:
    """The callable to time for ``fn`` by ``method`` (None: :func:`timing_method`). For ``cuda-graph``: ``fn``
    runs ``warmup`` times on a side stream (cuDNN picks its algorithms, caches fill), is captured once into a
    CUDA graph (in memory ``pool`` if given, see :func:`time_round_robin`), and the graph's replay is returned.
    A module that cannot be captured (an operation that synchronises with the host) falls back to eager
    timing, with a warning giving the error."""
    device = as_device(device)
    method = method or timing_method(device)
    if method not in METHODS:
        raise ValueError(f"unknown timing method {method!r}; known: {', '.join(METHODS)}")
    if method == "eager":
        return fn
    if device.type != "cuda":
        raise ValueError(f"timing method 'cuda-graph' needs a CUDA device, got {device}")
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(max(1, warmup)):
            fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    try:
        with warnings.catch_warnings():
            # An identity component (stage 1's entry without pooling) launches no kernel: its graph is
            # empty, replays in no time, and torch's warning about it says nothing wrong here.
            warnings.filterwarnings("ignore", message="The CUDA Graph is empty")
            with torch.cuda.graph(graph, pool=pool):
                fn()
    except RuntimeError as e:
        torch.cuda.synchronize(device)
        print(f"[latency] warning: CUDA graph capture failed, timing eagerly instead: {str(e).splitlines()[0]}",
              file=sys.stderr, flush=True)
        return fn
    return graph.replay


def time_call(fn: Callable[[], Any], device: str | torch.device = "cpu", *, warmup: int = 3,
              repeats: int = 10, method: str | None = None) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones (CUDA synchronised
    before and after each timed call), by ``method`` (:func:`prepare_call`). The caller sets eval mode and
    inference mode."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    device = as_device(device)
    fn = prepare_call(fn, device, method, warmup)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_round_robin(fns: dict[str, Callable[[], Any]], device: str | torch.device = "cpu", *, warmup: int = 2,
                     repeats: int = 5, progress: str | None = None, method: str | None = None) -> dict[str, float]:
    """Median seconds of each call in ``fns``, timed in rounds: ``warmup`` untimed rounds, then
    ``repeats`` timed rounds, each calling every function once in turn (each by ``method``, see
    :func:`prepare_call`).

    Why rounds rather than one function's runs back to back: (1) a module then runs after other
    modules, with its weights out of the caches, as in a network, not hot from its own previous
    run; (2) on a shared machine, a change in load during the build hits every entry alike instead
    of a few entries hard."""
    device = as_device(device)
    # One memory pool for all the graphs: they are replayed in the order they were captured, one at a time,
    # and no one reads their outputs, so they may reuse each other's memory (a table has 100+ components).
    pool = torch.cuda.graph_pool_handle() if (method or timing_method(device)) == "cuda-graph" else None
    fns = {key: prepare_call(fn, device, method, warmup, pool) for key, fn in fns.items()}
    samples: dict[str, list[float]] = {key: [] for key in fns}
    for r in range(warmup + repeats):
        for key, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            if r >= warmup:
                samples[key].append(time.perf_counter() - start)
        if progress:
            print(f"[latency] {progress}: round {r + 1}/{warmup + repeats} ({'warm-up' if r < warmup else 'timed'})",
                  file=sys.stderr, flush=True)
    return {key: statistics.median(v) for key, v in samples.items()}


def measure_latency(model: nn.Module, settings: NetSettings, *, batch_size: int = 1, warmup: int = 3,
                    repeats: int = 10, device: str | torch.device = "cpu", method: str | None = None) -> float:
    """Seconds per forward pass of a batch of ``batch_size`` random images at ``settings``: the
    median of ``repeats`` timed runs after ``warmup`` untimed ones, in eval and inference mode, by ``method``
    (None: a CUDA graph on CUDA, eager elsewhere; :func:`timing_method`).
    The model is moved to ``device``; its train/eval mode is restored afterwards."""
    device = as_device(device)
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.inference_mode():
            x = torch.randn(batch_size, settings.in_chans, settings.img_size, settings.img_size, device=device)
            return time_call(lambda: model(x), device, warmup=warmup, repeats=repeats, method=method)
    finally:
        model.train(was_training)


def _lock_name(device: torch.device) -> str:
    if device.type == "cuda":  # the physical GPU: Ray gives each trial its own CUDA_VISIBLE_DEVICES numbering
        props = torch.cuda.get_device_properties(device)
        return f"cuda-{_slug(str(getattr(props, 'uuid', '') or props.name))}"
    return device.type


@contextlib.contextmanager
def device_lock(device: str | torch.device, *, exclusive: bool, lock_dir: str | os.PathLike | None = None):
    """Hold this machine's lock for ``device`` (a file lock, so it holds across Ray's trial processes).

    A timing holds it ``exclusive``; other work on the device (a trial's accuracy evaluation) holds it shared.
    So a network is never timed while another trial's kernels run on the same device, and concurrent
    evaluations still overlap one another. ``--latency measure`` uses it; the lookup table needs none.
    """
    device = as_device(device)
    folder = Path(lock_dir or Path(tempfile.gettempdir()) / "mixernas-device-locks")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{_lock_name(device)}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def processor_name(device: str | torch.device) -> str:
    """The CPU model, or the GPU's name."""
    device = as_device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model()


def device_tag(device: str | torch.device, batch_size: int, backend: str = "torch", threads: int | None = None) -> str:
    """Names what a latency depends on besides the network: e.g. ``cpu-amd-epyc-t2-b1`` (CPU model,
    torch's intra-op threads, batch), ``cuda-nvidia-h100-80gb-hbm3-b1``, or for ONNX Runtime on the CPU
    ``onnxruntime-cpu-amd-epyc-t2-b1`` (its intra-op ``threads``)."""
    device = as_device(device)
    if backend == "onnxruntime":
        return f"onnxruntime-cpu-{_slug(_cpu_model())}-t{threads}-b{batch_size}"
    if device.type == "cuda":
        return f"cuda-{_slug(torch.cuda.get_device_name(device))}-b{batch_size}"
    if device.type == "cpu":
        return f"cpu-{_slug(_cpu_model())}-t{torch.get_num_threads()}-b{batch_size}"
    return f"{device.type}-b{batch_size}"


__all__ = ["METHODS", "timing_method", "prepare_call", "time_call", "time_round_robin", "measure_latency",
           "device_lock", "processor_name", "device_tag"]

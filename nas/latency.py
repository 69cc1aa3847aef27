"""Latency as a search objective: measured on whole networks, or predicted from a lookup table.

``measure_latency`` times a built network. ``LatencyTable`` times each component of the network
once per shape it can meet in the search space (the stem, each stage entry per input resolution
and pool, each block per resolution, mixer, kernel and shift, the head per final resolution) and
predicts an arch's latency as the sum of its components. A table is per device, thread count and
batch size; ``load_or_build_table`` caches it as JSON under ``results/latency``.

Components (keys of ``LatencyTable.entries``; stages are numbered from 1, resolutions are the
token-map side)::

    stem                                   patch embedding (conv + LayerNorm)
    entry/s{i}/r{in_res}/p{pool}           stage i's entry from a map of side in_res
    block/s{i}/r{res}/{mixer}/k{kernel}    one block of stage i on a map of side res
    block/s{i}/r{res}/{mixer}/k{kernel}/shift   the same with Swin's shifted windows (block j >= 1)
    head/r{res}                            final LayerNorm + average pool + linear classifier

plus a whole-network ``overhead`` (seconds, may be negative), fitted at build time; see
``_fit_overhead``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from searchspace import Arch, NetSettings, SearchSpace, SpaceError, extreme_archs, write_json_atomic
from searchspace.space import StageSpace

FORMAT = 1
SHIFTABLE = ("window_attention",)  # mixers whose forward depends on the shift flag


# --- measuring -----------------------------------------------------------------------------------

def _device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: str | torch.device = "cpu", *, warmup: int = 3,
              repeats: int = 10) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones (CUDA synchronised
    before and after each timed call). The caller sets eval mode and inference mode."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    device = _device(device)
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


def measure_latency(model: nn.Module, settings: NetSettings, *, batch_size: int = 1, warmup: int = 3,
                    repeats: int = 10, device: str | torch.device = "cpu") -> float:
    """Seconds per forward pass of a batch of ``batch_size`` random images at ``settings``: the
    median of ``repeats`` timed runs after ``warmup`` untimed ones, in eval and inference mode.
    The model is moved to ``device``; its train/eval mode is restored afterwards."""
    device = _device(device)
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.inference_mode():
            x = torch.randn(batch_size, settings.in_chans, settings.img_size, settings.img_size, device=device)
            return time_call(lambda: model(x), device, warmup=warmup, repeats=repeats)
    finally:
        model.train(was_training)


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


def device_tag(device: str | torch.device, batch_size: int) -> str:
    """Names what a latency depends on besides the network: e.g. ``cpu-amd-epyc-t2-b1`` (CPU model,
    torch's intra-op threads, batch) or ``cuda-nvidia-h100-80gb-hbm3-b1``."""
    device = _device(device)
    if device.type == "cuda":
        return f"cuda-{_slug(torch.cuda.get_device_name(device))}-b{batch_size}"
    if device.type == "cpu":
        return f"cpu-{_slug(_cpu_model())}-t{torch.get_num_threads()}-b{batch_size}"
    return f"{device.type}-b{batch_size}"


# --- components ----------------------------------------------------------------------------------

def _block_key(stage: int, res: int, mixer: str, kernel: int, shift: bool) -> str:
    # The shift changes the computation only for window attention on a map larger than the window
    # (WindowAttentionMixer: no shift where H <= kernel); elsewhere both parities share an entry.
    shift = shift and mixer in SHIFTABLE and res > kernel
    return f"block/s{stage}/r{res}/{mixer}/k{kernel}" + ("/shift" if shift else "")


def arch_components(arch: Arch, settings: NetSettings) -> list[str]:
    """The table keys of ``arch``'s network, one per module call (a block key repeats per block)."""
    res = settings.img_size // settings.patch_size
    keys = ["stem"]
    for i, choice in enumerate(arch.stages, start=1):
        keys.append(f"entry/s{i}/r{res}/p{choice.pool}")
        res = math.ceil(res / 2) if choice.pool == 2 else res
        keys.extend(_block_key(i, res, choice.mixer, choice.kernel, j % 2 == 1) for j in range(choice.depth))
    keys.append(f"head/r{res}")
    return keys


def _plan(space: SearchSpace, settings: NetSettings) -> list[tuple[str, tuple]]:
    """Every component any arch of ``space`` needs, each once: (key, what to time)."""
    dims = settings.stage_dims(space.num_stages)
    res_in = {settings.img_size // settings.patch_size}
    plan: list[tuple[str, tuple]] = [("stem", ("stem",))]
    seen = {"stem"}
    in_dim = settings.embed_dim
    for i, (stage, dim) in enumerate(zip(space.stages, dims), start=1):
        res_out = set()
        for r in sorted(res_in, reverse=True):
            for p in stage.pools:
                plan.append((f"entry/s{i}/r{r}/p{p}", ("entry", i, r, p, in_dim)))
                res_out.add(math.ceil(r / 2) if p == 2 else r)
        shifts = (False, True) if max(stage.depths) >= 2 else (False,)
        for r in sorted(res_out, reverse=True):
            for m in stage.mixers:
                for k in stage.kernels:
                    for sh in shifts:
                        key = _block_key(i, r, m, k, sh)
                        if key not in seen:
                            seen.add(key)
                            plan.append((key, ("block", i, r, m, k, key.endswith("/shift"), dim)))
        res_in, in_dim = res_out, dim
    plan.extend((f"head/r{r}", ("head", r, in_dim)) for r in sorted(res_in, reverse=True))
    return plan


def _skeleton_space(space: SearchSpace) -> SearchSpace:
    """The space's stem, every entry and the head, with one cheap block per stage: the network that
    holds the non-block modules without building the supernet's elastic blocks."""
    return SearchSpace(tuple(StageSpace(s.mixers[:1], (min(s.kernels),), (1,), s.pools) for s in space.stages))


# --- the table -----------------------------------------------------------------------------------

def space_settings_hash(space: SearchSpace, settings: NetSettings) -> str:
    text = json.dumps({"space": space.to_dict(), "settings": settings.to_dict()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


class LatencyTable:
    """Measured seconds per network component on one device; ``predict(arch)`` sums them."""

    def __init__(self, entries: dict[str, float], *, space: SearchSpace, settings: NetSettings, device: str,
                 batch_size: int, overhead: float = 0.0, meta: dict[str, Any] | None = None) -> None:
        self.entries = dict(entries)
        self.space = space
        self.settings = settings
        self.device = device            # the device tag
        self.batch_size = batch_size
        self.overhead = overhead        # seconds added once per network (fitted; see _fit_overhead)
        self.meta = dict(meta or {})    # torch version, build time, calibration data, ...

    # --- prediction ---------------------------------------------------------------------------
    def components(self, arch: Arch) -> list[str]:
        return arch_components(arch, self.settings)

    def predict(self, arch: Arch) -> float:
        """Predicted seconds per forward pass (whole batch). Raises SpaceError for an arch that
        needs an entry the table lacks (a choice or a resolution outside the table's space)."""
        total = self.overhead
        for key in self.components(arch):
            try:
                total += self.entries[key]
            except KeyError:
                raise SpaceError(f"arch {arch.key()}: the latency table ({self.device}) has no entry '{key}'; "
                                 "rebuild it for a space that holds this arch") from None
        return total

    def modules_sum(self, arch: Arch) -> float:
        """The prediction without the fitted overhead."""
        return self.predict(arch) - self.overhead

    # --- building -----------------------------------------------------------------------------
    @classmethod
    def build(cls, space: SearchSpace, settings: NetSettings, *, device: str | torch.device = "cpu",
              batch_size: int = 1, warmup: int = 2, repeats: int = 5, progress: bool = True,
              calibration_archs: int = 2, seed: int = 0) -> "LatencyTable":
        """Time every component of ``space`` at ``settings`` on ``device``, then fit the whole-network
        overhead on ``calibration_archs`` archs (the cheapest by FLOPs, then seeded random ones;
        0 leaves the overhead at 0)."""
        from supernet.network import MixerBlock, MixerNet, _init_weights  # torch modules only here

        device = _device(device)
        plan = _plan(space, settings)
        started = time.perf_counter()
        skeleton = MixerNet(_skeleton_space(space), settings).to(device).eval()
        dims = settings.stage_dims(space.num_stages)
        blocks: dict[tuple[int, str, int], nn.Module] = {}  # one standalone block per (stage, mixer, kernel)

        def block_for(stage: int, mixer: str, kernel: int) -> nn.Module:
            if (stage, mixer, kernel) not in blocks:
                for old in [k for k in blocks if k[0] != stage]:  # keep one stage's blocks in memory
                    del blocks[old]
                dim = dims[stage - 1]
                # Exactly the block of a standalone network (MixerStage over a one-arch space: its
                # largest kernel is the kernel). A supernet block would also slice its largest
                # kernel's weights (and gather generator rows) on every call, which a standalone
                # network does not: that is measurable time, so it is not used here.
                block = MixerBlock(dim, (mixer,), kernel, settings.num_heads(dim), settings.mlp_hidden(dim))
                block.apply(_init_weights)
                blocks[(stage, mixer, kernel)] = block.to(device).eval()
            return blocks[(stage, mixer, kernel)]

        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(batch_size, *shape, device=device)

        entries: dict[str, float] = {}
        with torch.inference_mode():
            for n, (key, what) in enumerate(plan, start=1):
                kind = what[0]
                if kind == "stem":
                    x = randn(settings.in_chans, settings.img_size, settings.img_size)
                    fn = lambda m=skeleton.patch_embed, x=x: m(x)  # noqa: E731
                elif kind == "entry":
                    _, i, r, p, in_dim = what
                    x = randn(r, r, in_dim)
                    fn = lambda m=skeleton.stages[i - 1].transitions[f"pool{p}"], x=x: m(x)  # noqa: E731
                elif kind == "block":
                    _, i, r, m, k, sh, dim = what
                    x = randn(r, r, dim)
                    fn = lambda b=block_for(i, m, k), x=x, m=m, k=k, sh=sh: b(x, m, k, sh)  # noqa: E731
                else:
                    _, r, dim = what
                    x = randn(r, r, dim)
                    fn = lambda x=x: skeleton.forward_head(skeleton.norm(x))  # noqa: E731
                entries[key] = time_call(fn, device, warmup=warmup, repeats=repeats)
                if progress:
                    print(f"[latency {n}/{len(plan)}] {key}: {entries[key] * 1e3:.3f} ms", file=sys.stderr, flush=True)
        del blocks, skeleton

        tag = device_tag(device, batch_size)
        table = cls(entries, space=space, settings=settings, device=tag, batch_size=batch_size,
                    meta={"torch": torch.__version__, "warmup": warmup, "repeats": repeats})
        if calibration_archs > 0:
            table._fit_overhead(calibration_archs, seed, device, progress)
        table.meta["build_seconds"] = round(time.perf_counter() - started, 3)
        table.meta["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        return table

    def _fit_overhead(self, count: int, seed: int, device: torch.device, progress: bool) -> None:
        """Fit one constant per network: measured minus summed components, median over ``count``
        standalone networks measured whole.

        Why: each component is timed alone, warm, in a tight loop. A whole network adds what no
        component sees: the Python of MixerNet/MixerStage.forward between modules, and caches that
        are cold for each module's weights after its predecessors ran. A constant per network is the
        simplest honest correction: it is measured on networks of this very device and setting,
        stored in the table (``overhead``, with the calibration data in ``meta``), and the same for
        every arch, so it never changes how two archs rank. The calibration archs are the cheapest
        one (where the overhead is the largest share) and seeded random ones.
        """
        from supernet.network import MixerNet

        rng = random.Random(f"latency-calibration-{seed}")  # not the stream a benchmark draws with seed
        archs = [extreme_archs(self.space, self.settings)[0]]
        while len(archs) < count:
            archs.append(self.space.sample(rng))
        gaps, rows = [], []
        for arch in archs[:count]:
            net = MixerNet.from_arch(arch, self.settings)
            measured = measure_latency(net, self.settings, batch_size=self.batch_size, warmup=2, repeats=5,
                                       device=device)
            summed = self.modules_sum(arch)
            gaps.append(measured - summed)
            rows.append({"arch": arch.key(), "measured": measured, "modules_sum": summed})
            if progress:
                print(f"[latency calibration] {arch.key()}: measured {measured * 1e3:.3f} ms, "
                      f"components {summed * 1e3:.3f} ms", file=sys.stderr, flush=True)
            del net
        self.overhead = statistics.median(gaps)
        self.meta["calibration"] = rows

    # --- files --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "device": self.device,
            "batch_size": self.batch_size,
            "torch": self.meta.get("torch", torch.__version__),
            "settings": self.settings.to_dict(),
            "space": self.space.to_dict(),
            "space_settings_hash": space_settings_hash(self.space, self.settings),
            "overhead": self.overhead,
            "meta": self.meta,
            "entries": self.entries,
        }

    def save(self, path: str | os.PathLike) -> None:
        """JSON, written atomically (temp file beside ``path``, then os.replace)."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LatencyTable":
        """Read a table file; raises SpaceError for a missing, unreadable or malformed file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SpaceError(f"{path}: no such file") from None
        except (OSError, json.JSONDecodeError) as e:
            raise SpaceError(f"{path}: not a latency table: {e}") from None
        try:
            if data.get("format") != FORMAT:
                raise SpaceError(f"{path}: latency table format {data.get('format')!r}, expected {FORMAT}")
            meta = dict(data.get("meta") or {})
            meta.setdefault("torch", data.get("torch"))
            return cls({str(k): float(v) for k, v in data["entries"].items()},
                       space=SearchSpace.from_dict(data["space"], source=str(path)),
                       settings=NetSettings.from_dict(data["settings"]),
                       device=str(data["device"]), batch_size=int(data["batch_size"]),
                       overhead=float(data.get("overhead", 0.0)), meta=meta)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise SpaceError(f"{path}: malformed latency table: {e!r}") from None

    def matches(self, space: SearchSpace, settings: NetSettings, device: str | torch.device,
                batch_size: int) -> bool:
        """Whether this table was built for exactly this space, settings, device tag, batch and torch."""
        return (self.space == space and self.settings == settings and self.batch_size == batch_size
                and self.device == device_tag(device, batch_size) and self.meta.get("torch") == torch.__version__)


def table_path(space: SearchSpace, settings: NetSettings, *, device: str | torch.device = "cpu", batch_size: int = 1,
               cache_dir: str | os.PathLike = "results/latency") -> Path:
    return Path(cache_dir) / f"{device_tag(device, batch_size)}-{space_settings_hash(space, settings)}.json"


def load_or_build_table(space: SearchSpace, settings: NetSettings, *, device: str | torch.device = "cpu",
                        batch_size: int = 1, cache_dir: str | os.PathLike = "results/latency",
                        progress: bool = True) -> LatencyTable:
    """The cached table for (space, settings, device, batch), built and saved if missing or if the
    file does not match (another space, settings, device tag, batch or torch version)."""
    path = table_path(space, settings, device=device, batch_size=batch_size, cache_dir=cache_dir)
    if path.exists():
        try:
            table = LatencyTable.load(path)
        except SpaceError as e:
            if progress:
                print(f"[latency] rebuilding {path}: {e}", file=sys.stderr, flush=True)
        else:
            if table.matches(space, settings, device, batch_size):
                return table
            if progress:
                print(f"[latency] rebuilding {path}: built for another space, setting, device or torch",
                      file=sys.stderr, flush=True)
    table = LatencyTable.build(space, settings, device=device, batch_size=batch_size, progress=progress)
    table.save(path)
    return table


__all__ = ["measure_latency", "device_tag", "time_call", "arch_components", "LatencyTable", "table_path",
           "load_or_build_table", "space_settings_hash"]

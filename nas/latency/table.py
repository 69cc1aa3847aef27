"""The latency lookup table: an arch's latency predicted from measured components.

``LatencyTable`` times each component of the network
once per shape it can meet in the search space (the stem, each stage entry per input resolution
and pool, each block per resolution, mixer, kernel and shift, the head per final resolution) and
predicts an arch's latency as the sum of its components. A table is per device, thread count and
batch size; ``load_or_build_table`` caches it as JSON under ``results/latency``.

Components (keys of ``LatencyTable.entries``; stages are numbered from 1, resolutions are the
token-map side)::

    stem                                   patch embedding (conv + LayerNorm)
    entry/s{i}/r{in_res}/p{pool}[mp]       stage i's entry from a map of side in_res (mp: max pooling)
    block/s{i}/r{res}/{mixer}/k{kernel}    one block of stage i on a map of side res
    block/s{i}/r{res}/{mixer}/k{kernel}/shift   the same with Swin's shifted windows (block j >= 1)
    head/r{res}                            final LayerNorm + average pool + linear classifier

and a whole-network ``scale`` (about 1), fitted at build time on a few whole networks: the
prediction is ``scale * sum(components)``; see ``LatencyTable._fit_scale``.

Components are timed by ``nas.latency.timing`` (a CUDA graph on a GPU, eager elsewhere); tables record the method.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from nas.latency.backends import describe_machine, network_call, time_prepared, timed_call
from nas.latency.timing import as_device, device_tag, time_round_robin, timing_method
from searchspace import MIXER_SPECS, Arch, NetSettings, SearchSpace, SpaceError, extreme_archs, write_json_atomic
from searchspace.arch import POOL_OP_SHORT, entry_name, read_json_file
from searchspace.space import StageSpace

FORMAT = 1
# The version of the timed modules' code: bump it when a mixer's or an entry's implementation changes
# its speed, so that cached tables are rebuilt (tables without it are version 1). 2: the inhomogeneous
# dynamic conv's strided-window form.
MODULES_VERSION = 2
SHIFTABLE = tuple(name for name, spec in MIXER_SPECS.items() if spec.shiftable)  # forward depends on the shift


# --- components ----------------------------------------------------------------------------------

def _block_key(stage: int, res: int, mixer: str, kernel: int, shift: bool) -> str:
    # The shift changes the computation only for window attention on a map larger than the window
    # (WindowAttentionMixer: no shift where H <= kernel); elsewhere both parities share an entry.
    shift = shift and mixer in SHIFTABLE and res > kernel
    return f"block/s{stage}/r{res}/{mixer}/k{kernel}" + ("/shift" if shift else "")


def _entry_key(stage: int, res: int, pool: int, pool_op: str) -> str:
    return f"entry/s{stage}/r{res}/p{pool}{POOL_OP_SHORT[pool_op]}"


def arch_components(arch: Arch, settings: NetSettings) -> list[str]:
    """The table keys of ``arch``'s network, one per module call (a block key repeats per block)."""
    res = settings.img_size // settings.patch_size
    keys = ["stem"]
    for i, choice in enumerate(arch.stages, start=1):
        keys.append(_entry_key(i, res, choice.pool, choice.pool_op))
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
            for p, op in stage.entries():
                plan.append((_entry_key(i, r, p, op), ("entry", i, r, entry_name(p, op), in_dim)))
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
    return SearchSpace(tuple(StageSpace(s.mixers[:1], (min(s.kernels),), (1,), s.pools, s.pool_ops)
                             for s in space.stages))


# --- the table -----------------------------------------------------------------------------------

def space_settings_hash(space: SearchSpace, settings: NetSettings) -> str:
    text = json.dumps({"space": space.to_dict(), "settings": settings.to_dict()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


class _Block(nn.Module):
    """A block called with its mixer, kernel and shift fixed: a component of one tensor input, as an exporter
    takes it."""

    def __init__(self, block: nn.Module, *args) -> None:
        super().__init__()
        self.block, self.args = block, args

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, *self.args)


class _Head(nn.Module):
    """The final norm and the classifier head of a network."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.norm(x))


class _Modules:
    """What a table times, on one device and backend: the stem, every entry and the head of a skeleton network,
    and one standalone block per (stage, mixer, kernel), each on a random input of its shape."""

    def __init__(self, space: SearchSpace, settings: NetSettings, device: torch.device, batch_size: int,
                 backend: str = "torch", threads: int = 1) -> None:
        from supernet.network import MixerNet  # torch modules only when timing

        self.settings, self.device, self.batch_size = settings, device, batch_size
        self.backend, self.threads = backend, threads
        self.calls: dict[str, Callable[[], Any]] = {}
        self.skeleton = MixerNet(_skeleton_space(space), settings).to(device).eval()
        self.dims = settings.stage_dims(space.num_stages)
        self.blocks: dict[tuple[int, str, int], nn.Module] = {}
        self.inputs: dict[tuple[int, ...], torch.Tensor] = {}

    def block(self, stage: int, mixer: str, kernel: int) -> nn.Module:
        from supernet.network import MixerBlock, _init_weights

        if (stage, mixer, kernel) not in self.blocks:
            dim = self.dims[stage - 1]
            # Exactly the block of a standalone network (MixerStage over a one-arch space: its
            # largest kernel is the kernel). A supernet block would also slice its largest kernel's
            # weights (and gather generator rows) on every call, which a standalone network does
            # not: that is measurable time, so supernet blocks are not used here.
            block = MixerBlock(dim, (mixer,), kernel, self.settings.num_heads(dim), self.settings.mlp_hidden(dim))
            block.apply(_init_weights)
            self.blocks[(stage, mixer, kernel)] = block.to(self.device).eval()
        return self.blocks[(stage, mixer, kernel)]

    def randn(self, *shape: int) -> torch.Tensor:
        """Random data (not zeros), one tensor per shape."""
        if shape not in self.inputs:
            self.inputs[shape] = torch.randn(self.batch_size, *shape, device=self.device)
        return self.inputs[shape]

    def component(self, what: tuple) -> tuple[nn.Module, torch.Tensor]:
        """One component (a plan item) as a module of one input, and that input."""
        net, s = self.skeleton, self.settings
        kind = what[0]
        if kind == "stem":
            return net.patch_embed, self.randn(s.in_chans, s.img_size, s.img_size)
        if kind == "entry":
            _, i, r, name, in_dim = what
            return net.stages[i - 1].transitions[name], self.randn(r, r, in_dim)
        if kind == "block":
            _, i, r, m, k, sh, dim = what
            return _Block(self.block(i, m, k), m, k, sh), self.randn(r, r, dim)
        _, r, dim = what
        return _Head(net), self.randn(r, r, dim)

    def time(self, plan: dict[str, tuple], warmup: int, repeats: int, progress: str | None = None
             ) -> dict[str, float]:
        for n, (key, what) in enumerate(plan.items(), start=1):
            if key not in self.calls:  # each component exported (ONNX Runtime) once, however often it is timed
                if progress and self.backend == "onnxruntime":
                    print(f"[latency] exporting {key} to ONNX ({n}/{len(plan)})", file=sys.stderr, flush=True)
                module, x = self.component(what)
                self.calls[key] = timed_call(self.backend, module, (x,), self.threads)
        method = "eager" if self.backend == "onnxruntime" else timing_method(self.device)
        return time_round_robin({key: self.calls[key] for key in plan}, self.device, warmup=warmup, repeats=repeats,
                                progress=progress, method=method)

    def time_network(self, net: nn.Module, warmup: int, repeats: int) -> Callable[[], float]:
        """A function that times the whole network ``net`` (prepared once: exported once for ONNX Runtime)."""
        call = network_call(self.backend, net, self.settings, batch_size=self.batch_size, threads=self.threads,
                            device=self.device)
        return lambda: time_prepared(call, self.backend, self.device, warmup=warmup, repeats=repeats)


class LatencyTable:
    """Measured seconds per network component on one device; ``predict(arch)`` is their sum for the
    arch's components, times a whole-network ``scale`` fitted at build time (see ``_fit_scale``)."""

    def __init__(self, entries: dict[str, float], *, space: SearchSpace, settings: NetSettings, device: str,
                 batch_size: int, scale: float = 1.0, meta: dict[str, Any] | None = None,
                 backend: str = "torch") -> None:
        self.entries = dict(entries)
        self.backend = backend          # what ran the timed modules: torch or onnxruntime (nas.latency.backends)
        self.space = space
        self.settings = settings
        self.device = device            # the device tag
        self.batch_size = batch_size
        self.scale = scale              # whole network / sum of its components (fitted; see _fit_scale)
        self.meta = dict(meta or {})    # torch version, build time, calibration data, ...

    # --- prediction ---------------------------------------------------------------------------
    def components(self, arch: Arch) -> list[str]:
        return arch_components(arch, self.settings)

    def modules_sum(self, arch: Arch) -> float:
        """Seconds summed over the arch's components, without the fitted scale. Raises SpaceError
        for an arch that needs an entry the table lacks (a choice or resolution outside its space)."""
        if len(arch.stages) != self.space.num_stages:
            raise SpaceError(f"arch {arch.key()}: {len(arch.stages)} stages, the latency table's space has "
                             f"{self.space.num_stages}")
        total = 0.0
        for key in self.components(arch):
            try:
                total += self.entries[key]
            except KeyError:
                raise SpaceError(f"arch {arch.key()}: the latency table ({self.device}) has no entry '{key}'; "
                                 "rebuild it for a space that holds this arch") from None
        return total

    def predict(self, arch: Arch) -> float:
        """Predicted seconds per forward pass (whole batch). Raises SpaceError as ``modules_sum``."""
        return self.scale * self.modules_sum(arch)

    # --- building -----------------------------------------------------------------------------
    @classmethod
    def build(cls, space: SearchSpace, settings: NetSettings, *, device: str | torch.device = "cpu",
              batch_size: int = 1, warmup: int = 2, repeats: int = 5, progress: bool = True,
              calibration_archs: int = 3, seed: int = 0, backend: str = "torch",
              threads: int | None = None) -> "LatencyTable":
        """Time every component any arch of ``space`` needs at ``settings`` on ``device`` in ``backend``, each once
        (enumerating components, not archs), then fit the whole-network scale on ``calibration_archs`` standalone
        networks (0: scale 1, the plain sum). ``threads``: the intra-op threads (default: torch's now)."""
        device = as_device(device)
        threads = threads or torch.get_num_threads()
        started = time.perf_counter()
        plan = dict(_plan(space, settings))
        saved_threads = torch.get_num_threads()
        torch.set_num_threads(threads)  # the torch backend's threads (and the device tag's)
        try:
            modules = _Modules(space, settings, device, batch_size, backend, threads)
            entries = modules.time(plan, warmup, repeats, progress=f"{len(plan)} components" if progress else None)
            method = "eager" if backend == "onnxruntime" else timing_method(device)
            tag = device_tag(device, batch_size, backend, threads)
            table = cls(entries, space=space, settings=settings, device=tag, batch_size=batch_size, backend=backend,
                        meta={"torch": torch.__version__, "warmup": warmup, "repeats": repeats, "method": method,
                              "modules": MODULES_VERSION, "threads": threads, **describe_machine(backend, device)})
            if calibration_archs > 0:
                table._fit_scale(modules, plan, calibration_archs, seed, warmup, repeats, progress)
            del modules
        finally:
            torch.set_num_threads(saved_threads)
        table.meta["build_seconds"] = round(time.perf_counter() - started, 3)
        table.meta["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        return table

    def pick_calibration_archs(self, count: int, seed: int = 0) -> list[Arch]:
        """The cheapest arch by FLOPs, then seeded random ones from the lower half of the space's
        FLOP range (log scale, so calibrating stays cheap at the deployment setting)."""
        from searchspace import arch_cost

        cheapest, dearest = extreme_archs(self.space, self.settings)
        cap = math.sqrt(arch_cost(cheapest, self.settings).flops * arch_cost(dearest, self.settings).flops)
        rng = random.Random(f"latency-calibration-{seed}")  # not the stream a benchmark draws with seed
        archs, draws = [cheapest], 0
        while len(archs) < min(count, self.space.size()) and draws < 10_000:
            arch, draws = self.space.sample(rng), draws + 1
            if arch not in archs and arch_cost(arch, self.settings).flops <= cap:
                archs.append(arch)
        return archs[:count]

    def _fit_scale(self, modules: _Modules, plan: dict[str, tuple], count: int, seed: int, warmup: int,
                   repeats: int, progress: bool) -> None:
        """Fit ``scale``: the median, over ``count`` calibration archs, of (whole standalone network's
        latency) / (sum of its components re-timed right after it).

        Why: the components are timed each alone (in rounds, see ``time_round_robin``). A whole
        network differs in what no component sees: the Python of MixerNet/MixerStage.forward
        between modules, the allocator's work on a network's live buffers, a module's input coming
        hot from its predecessor, and on CUDA the launches of one module overlapping the previous
        one's kernels (each component is timed between two synchronisations). Such effects scale
        more with the network than per network, so one factor per table is fitted rather than a
        constant. On the 2-core CPU the fitted factor was 0.99 (with components timed back to back
        instead of in rounds, a network took about 5% longer than its parts). The components are
        re-timed next to each whole measurement (whole, components, whole again) so that the ratio
        reflects the network, not a change in the machine's load since the entries were timed (on
        a shared machine such drift was as large as the effect). The factor is the same for every
        arch, so it never changes how two archs rank; it is stored in the table (``scale``) with
        its calibration data (``meta["calibration"]``).
        """
        from supernet.network import MixerNet

        ratios, rows = [], []
        for arch in self.pick_calibration_archs(count, seed):
            net = MixerNet.from_arch(arch, self.settings)
            counts = Counter(self.components(arch))

            whole = modules.time_network(net, warmup, repeats)
            before = whole()
            retimed = modules.time({key: plan[key] for key in counts}, warmup, repeats)
            parts = sum(n * retimed[key] for key, n in counts.items())
            measured = (before + whole()) / 2
            ratios.append(measured / parts)
            rows.append({"arch": arch.key(), "measured": measured, "components_retimed": parts,
                         "components_table": self.modules_sum(arch), "ratio": measured / parts})
            if progress:
                print(f"[latency calibration] {arch.key()}: whole {measured * 1e3:.3f} ms, components "
                      f"{parts * 1e3:.3f} ms (table {rows[-1]['components_table'] * 1e3:.3f} ms)",
                      file=sys.stderr, flush=True)
        self.scale = statistics.median(ratios)
        self.meta["calibration"] = rows

    # --- files --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "device": self.device,
            "backend": self.backend,
            "batch_size": self.batch_size,
            "torch": self.meta.get("torch", torch.__version__),
            "settings": self.settings.to_dict(),
            "space": self.space.to_dict(),
            "space_settings_hash": space_settings_hash(self.space, self.settings),
            "scale": self.scale,
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
        data = read_json_file(path)
        try:
            if data.get("format") != FORMAT:
                raise SpaceError(f"{path}: latency table format {data.get('format')!r}, expected {FORMAT}")
            meta = dict(data.get("meta") or {})
            meta.setdefault("torch", data.get("torch"))
            return cls({str(k): float(v) for k, v in data["entries"].items()},
                       space=SearchSpace.from_dict(data["space"], source=str(path)),
                       settings=NetSettings.from_dict(data["settings"]),
                       device=str(data["device"]), batch_size=int(data["batch_size"]),
                       scale=float(data["scale"]), meta=meta, backend=str(data.get("backend", "torch")))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise SpaceError(f"{path}: malformed latency table: {e!r}") from None

    def matches(self, space: SearchSpace, settings: NetSettings, device: str | torch.device,
                batch_size: int) -> bool:
        """Whether this table was built for exactly this space, settings, device tag, batch, torch, timing
        method (tables from before CUDA graphs were timed eagerly) and version of the timed modules."""
        return (self.space == space and self.settings == settings and self.batch_size == batch_size
                and self.device == device_tag(device, batch_size) and self.meta.get("torch") == torch.__version__
                and self.meta.get("method", "eager") == timing_method(device)
                and self.meta.get("modules", 1) == MODULES_VERSION)


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
                print(f"[latency] rebuilding {path}: built for another space, setting, device, torch or module version",
                      file=sys.stderr, flush=True)
    table = LatencyTable.build(space, settings, device=device, batch_size=batch_size, progress=progress)
    table.save(path)
    return table


__all__ = ["arch_components", "LatencyTable", "table_path", "load_or_build_table", "space_settings_hash"]

"""Latency: whole-network measurement and the per-device lookup table, on real (tiny) networks."""
from __future__ import annotations

import json
import math

import pytest
import torch

from nas.latency.table import LatencyTable, arch_components, load_or_build_table, table_path
from nas.latency.timing import device_tag, measure_latency
from searchspace import SMALL, Arch, SearchSpace, SpaceError
from supernet import MixerNet

TINY = SMALL  # 32 px, 1 channel, C = 16, patch 2: a 16 x 16 token map after the stem

# Three stages, every kind of component: window attention with and without shift (and a window
# larger than the 4 x 4 map of stage 3), every mixer, entries with pool 1 and 2 (merge and max pool).
TINY_SPACE = SearchSpace.from_dict({"stages": [
    {"mixers": ["window_attention", "dwconv"], "kernels": [3], "depths": [1, 2], "pools": [1]},
    {"mixers": ["dynamic_dwconv", "inhomogeneous_dwconv"], "kernels": [3, 5], "depths": [1], "pools": [1, 2],
     "pool_ops": ["merge", "maxpool"]},
    {"mixers": ["window_attention", "linear_angular"], "kernels": [5], "depths": [2], "pools": [1, 2]},
]})


@pytest.fixture(autouse=True)
def one_thread():
    # One intra-op thread: on a shared 2-core machine, 2 threads wait on each other at every op.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def table() -> LatencyTable:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return LatencyTable.build(TINY_SPACE, TINY, warmup=1, repeats=3, progress=False)
    finally:
        torch.set_num_threads(threads)


def arch(*stages: tuple) -> Arch:
    return Arch.from_dict({"stages": [dict(zip(("mixer", "kernel", "depth", "pool", "pool_op"), s)) for s in stages]})


def test_measure_latency_is_positive_finite_and_restores_mode():
    net = MixerNet.from_arch(next(iter(TINY_SPACE)), TINY).train()
    seconds = measure_latency(net, TINY, batch_size=2, warmup=1, repeats=3)
    assert isinstance(seconds, float) and math.isfinite(seconds) and seconds > 0
    assert net.training


def test_device_tag_names_threads_and_batch():
    tag = device_tag("cpu", 4)
    assert tag.startswith("cpu-") and tag.endswith(f"-t{torch.get_num_threads()}-b4")
    assert tag == tag.lower() and " " not in tag


def test_components_follow_the_network():
    a = arch(("window_attention", 3, 2, 1), ("dynamic_dwconv", 5, 1, 2), ("window_attention", 5, 2, 2))
    assert arch_components(a, TINY) == [
        "stem",
        "entry/s1/r16/p1", "block/s1/r16/window_attention/k3", "block/s1/r16/window_attention/k3/shift",
        "entry/s2/r16/p2", "block/s2/r8/dynamic_dwconv/k5",
        # a 5-window on a 4 x 4 map is the whole map and never shifts: both blocks share one entry
        "entry/s3/r8/p2", "block/s3/r4/window_attention/k5", "block/s3/r4/window_attention/k5",
        "head/r4",
    ]
    # conv mixers ignore the shift: one entry for both parities
    assert arch_components(arch(("dwconv", 3, 2, 1), ("dynamic_dwconv", 3, 1, 1), ("window_attention", 5, 2, 1)),
                           TINY)[2:4] == ["block/s1/r16/dwconv/k3"] * 2


def test_components_of_the_extended_operators():
    a = arch(("dwconv", 3, 1, 1), ("inhomogeneous_dwconv", 5, 1, 2, "maxpool"), ("linear_angular", 5, 2, 2))
    assert arch_components(a, TINY)[3:] == [
        "entry/s2/r16/p2mp", "block/s2/r8/inhomogeneous_dwconv/k5",
        # linear-angular attention is global: no shift, both parities share one entry
        "entry/s3/r8/p2", "block/s3/r4/linear_angular/k5", "block/s3/r4/linear_angular/k5", "head/r4"]


def test_table_holds_exactly_the_reachable_components(table):
    needed = {key for a in TINY_SPACE for key in arch_components(a, TINY)}
    assert set(table.entries) == needed
    assert all(math.isfinite(v) and v >= 0 for v in table.entries.values())
    assert math.isfinite(table.scale) and table.scale > 0
    assert len(table.meta["calibration"]) == 3


def test_predict_is_the_sum_of_entries(table):
    for a in TINY_SPACE:
        summed = sum(table.entries[k] for k in arch_components(a, TINY))
        assert table.modules_sum(a) == pytest.approx(summed, rel=1e-12)
        assert table.predict(a) == pytest.approx(table.scale * summed, rel=1e-12)


def test_predict_outside_the_table_raises(table):
    with pytest.raises(SpaceError, match="no entry 'block/s1/r16/window_attention/k7'"):
        table.predict(arch(("window_attention", 7, 1, 1), ("dynamic_dwconv", 3, 1, 1), ("window_attention", 5, 2, 1)))
    with pytest.raises(SpaceError, match="no entry 'entry/s1/r16/p2'"):  # stage 1 has no pool 2
        table.predict(arch(("dwconv", 3, 1, 2), ("dynamic_dwconv", 3, 1, 1), ("window_attention", 5, 2, 1)))
    with pytest.raises(SpaceError, match="4 stages"):
        table.predict(arch(("dwconv", 3, 1, 1), ("dynamic_dwconv", 3, 1, 1), ("window_attention", 5, 2, 1),
                           ("dwconv", 3, 1, 2)))
    with pytest.raises(SpaceError, match="2 stages"):
        table.predict(arch(("dwconv", 3, 1, 1), ("dynamic_dwconv", 3, 1, 1)))
    # Outside the space but made of measured components: predicted (depth 3 reuses both parities).
    assert table.predict(arch(("dwconv", 3, 3, 1), ("dynamic_dwconv", 3, 1, 1), ("window_attention", 5, 2, 1))) > 0


def test_save_load_round_trip_is_atomic(table, tmp_path):
    path = tmp_path / "sub" / "table.json"
    table.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["table.json"]  # no temp file left behind
    data = json.loads(path.read_text())
    assert data["device"] == table.device and data["batch_size"] == 1 and data["torch"] == torch.__version__
    assert data["settings"] == TINY.to_dict() and data["space"] == TINY_SPACE.to_dict()
    loaded = LatencyTable.load(path)
    assert loaded.entries == table.entries and loaded.scale == table.scale
    assert loaded.space == TINY_SPACE and loaded.settings == TINY
    assert (loaded.device, loaded.batch_size) == (table.device, table.batch_size)
    assert all(loaded.predict(a) == table.predict(a) for a in TINY_SPACE)
    assert loaded.matches(TINY_SPACE, TINY, "cpu", 1) and not loaded.matches(TINY_SPACE, TINY, "cpu", 2)


def test_load_rejects_a_bad_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpaceError, match="bad.json: invalid JSON at line 1"):
        LatencyTable.load(bad)
    bad.write_text('{"format": 0}')
    with pytest.raises(SpaceError, match="latency table format 0"):
        LatencyTable.load(bad)
    with pytest.raises(SpaceError, match="no such file"):
        LatencyTable.load(tmp_path / "missing.json")


def test_load_or_build_reuses_the_cache_and_rebuilds_on_mismatch(tmp_path, monkeypatch):
    builds = []
    original = LatencyTable.build.__func__

    def counting_build(cls, space, settings, **kw):
        builds.append(settings)
        return original(cls, space, settings, **{**kw, "warmup": 0, "repeats": 1, "calibration_archs": 0})

    monkeypatch.setattr(LatencyTable, "build", classmethod(counting_build))
    first = load_or_build_table(TINY_SPACE, TINY, cache_dir=tmp_path, progress=False)
    path = table_path(TINY_SPACE, TINY, cache_dir=tmp_path)
    assert path.exists() and path.name.startswith(device_tag("cpu", 1)) and len(builds) == 1
    mtime = path.stat().st_mtime_ns

    again = load_or_build_table(TINY_SPACE, TINY, cache_dir=tmp_path, progress=False)
    assert len(builds) == 1 and path.stat().st_mtime_ns == mtime and again.entries == first.entries

    other = TINY.replace(num_classes=5)  # other settings: another file, built
    load_or_build_table(TINY_SPACE, other, cache_dir=tmp_path, progress=False)
    assert builds == [TINY, other]
    assert table_path(TINY_SPACE, other, cache_dir=tmp_path) != path

    # A file at the right name that does not match (here: another torch) is rebuilt in place.
    data = json.loads(path.read_text())
    data["torch"] = data["meta"]["torch"] = "0.0.0"
    path.write_text(json.dumps(data))
    rebuilt = load_or_build_table(TINY_SPACE, TINY, cache_dir=tmp_path, progress=False)
    assert len(builds) == 3 and rebuilt.meta["torch"] == torch.__version__
    assert LatencyTable.load(path).meta["torch"] == torch.__version__
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_prediction_is_the_sum_of_its_components_times_the_calibrated_scale(table):
    # The arithmetic, exactly: the scale is the median whole/components ratio of the calibration archs, and a
    # prediction is that scale times the arch's components from the table. How near a prediction comes to a whole
    # network's measured latency is a timing, not for a unit test: `python -m benchmarks.latency_table` prints it
    # (median error beside the noise floor, docs/BENCHMARKS.md).
    ratios = [row["measured"] / row["components_retimed"] for row in table.meta["calibration"]]
    assert len(ratios) == 3 and table.scale == pytest.approx(sorted(ratios)[1])
    a = arch(("dwconv", 3, 1, 1), ("dynamic_dwconv", 3, 1, 2), ("window_attention", 5, 2, 2))
    parts = sum(table.entries[key] for key in table.components(a))
    assert table.predict(a) == pytest.approx(table.scale * parts)


def test_block_entries_use_standalone_blocks(monkeypatch):
    # A table block is a standalone network's block (one mixer, built for that kernel), not a
    # supernet block, which would also slice its largest kernel's weights on every call.
    import supernet.network as network

    built = []

    class Recording(network.MixerBlock):
        def __init__(self, dim, mixers, max_kernel, *args, **kw):
            built.append((tuple(mixers), max_kernel))
            super().__init__(dim, mixers, max_kernel, *args, **kw)

    monkeypatch.setattr(network, "MixerBlock", Recording)
    LatencyTable.build(TINY_SPACE, TINY, warmup=0, repeats=1, progress=False, calibration_archs=0)
    assert all(len(mixers) == 1 for mixers, _ in built)
    assert {(("dynamic_dwconv",), 3), (("dynamic_dwconv",), 5), (("window_attention",), 5)} <= set(built)


# --- timing method and the device lock (issue #10 item 4) ------------------------------------------

def test_cpu_is_timed_eagerly_and_the_table_says_so(table):
    from nas.latency.timing import prepare_call, timing_method
    assert timing_method("cpu") == "eager" and table.meta["method"] == "eager"
    fn = lambda: None  # noqa: E731
    assert prepare_call(fn, "cpu") is fn
    with pytest.raises(ValueError, match="needs a CUDA device"):
        prepare_call(fn, "cpu", "cuda-graph")
    with pytest.raises(ValueError, match="unknown timing method 'graph'"):
        prepare_call(fn, "cpu", "graph")


def test_a_table_timed_another_way_does_not_match(table):
    assert table.matches(TINY_SPACE, TINY, "cpu", 1)
    other = LatencyTable(table.entries, space=TINY_SPACE, settings=TINY, device=table.device, batch_size=1,
                         meta={**table.meta, "method": "cuda-graph"})
    assert not other.matches(TINY_SPACE, TINY, "cpu", 1)
    old = LatencyTable(table.entries, space=TINY_SPACE, settings=TINY, device=table.device, batch_size=1,
                       meta={k: v for k, v in table.meta.items() if k != "method"})
    assert old.matches(TINY_SPACE, TINY, "cpu", 1)  # a table from before methods were recorded was eager
    stale = LatencyTable(table.entries, space=TINY_SPACE, settings=TINY, device=table.device, batch_size=1,
                         meta={k: v for k, v in table.meta.items() if k != "modules"})
    assert not stale.matches(TINY_SPACE, TINY, "cpu", 1)  # timed before a module's implementation changed


def test_device_lock_timing_excludes_all_other_work(tmp_path):
    import fcntl

    from nas.latency.timing import device_lock

    def can_take(mode: int) -> bool:  # another open file description: what another process would see
        with open(tmp_path / "cpu.lock", "a+") as other:
            try:
                fcntl.flock(other, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(other, fcntl.LOCK_UN)
            return True

    with device_lock("cpu", exclusive=True, lock_dir=tmp_path):
        assert not can_take(fcntl.LOCK_SH) and not can_take(fcntl.LOCK_EX)
    with device_lock("cpu", exclusive=False, lock_dir=tmp_path):
        assert can_take(fcntl.LOCK_SH) and not can_take(fcntl.LOCK_EX)  # evaluations overlap; timing waits
    assert can_take(fcntl.LOCK_EX)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: CUDA graph capture and replay")
def test_cuda_graph_replay_computes_what_the_module_computes():
    from nas.latency.timing import prepare_call
    net = MixerNet.from_arch(arch(("window_attention", 3, 2, 1), ("dynamic_dwconv", 5, 1, 2),
                                  ("dwconv", 5, 1, 2)), TINY).cuda().eval()
    x = torch.randn(2, 1, 32, 32, device="cuda")
    with torch.inference_mode():
        eager = net(x)
        out = {}
        replay = prepare_call(lambda: out.__setitem__("y", net(x)), "cuda", "cuda-graph")
        replay()
        torch.cuda.synchronize()
        torch.testing.assert_close(out["y"], eager, atol=1e-4, rtol=1e-4)
        assert math.isfinite(measure_latency(net, TINY, batch_size=1, device="cuda", warmup=2, repeats=3))
        # graphs sharing one memory pool, replayed in capture order
        from nas.latency.timing import time_round_robin
        times = time_round_robin({"a": lambda: net(x), "b": lambda: net(x[:1])}, "cuda", warmup=1, repeats=2)
        assert all(math.isfinite(t) and t > 0 for t in times.values())

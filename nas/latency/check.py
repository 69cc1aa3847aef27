"""How well a latency table predicts whole networks on its own device: each network timed twice in the table's
backend, threads and batch, the first time against the prediction (the table's error), the second against the first
(the noise floor: what no table can beat on that machine). ``launch.py check-latency`` and
``benchmarks/latency_backends.py`` run it."""
from __future__ import annotations

import numpy as np
import torch

from nas.errors import UserError
from nas.latency.backends import network_call, time_prepared
from nas.latency.table import LatencyTable
from nas.latency.timing import device_tag
from searchspace import DEPLOYMENT, Arch, arch_cost


def table_threads(table: LatencyTable) -> int:
    return int(table.meta.get("threads") or torch.get_num_threads())


def check_here(table: LatencyTable, source: str) -> None:
    """Refuse a table measured on another machine (or with other threads): only its own device can check it."""
    device = "cuda" if table.device.startswith("cuda") else "cpu"
    torch.set_num_threads(table_threads(table))
    here = device_tag(device, table.batch_size, table.backend, table_threads(table))
    if here != table.device:
        raise UserError(f"{source} was measured as {table.device}; this machine is {here}: run check-latency "
                        f"where the table was built")


def measure_archs(table: LatencyTable, archs: list[Arch], *, warmup: int, repeats: int,
                  progress: bool = True) -> list[dict]:
    """One row per arch: predicted, measured and measured again (ms), the table's error and the noise (%)."""
    device = "cuda" if table.device.startswith("cuda") else "cpu"
    threads = table_threads(table)
    from supernet import MixerNet

    rows = []
    for i, arch in enumerate(archs, start=1):
        net = MixerNet.from_arch(arch, table.settings)
        call = network_call(table.backend, net, table.settings, batch_size=table.batch_size, threads=threads,
                            device=device)
        first, second = (time_prepared(call, table.backend, device, warmup=warmup, repeats=repeats) for _ in range(2))
        predicted = table.predict(arch)
        rows.append({"arch": arch.key(), "gflops": arch_cost(arch, DEPLOYMENT).flops / 1e9,
                     "predicted_ms": predicted * 1e3, "measured_ms": first * 1e3, "remeasured_ms": second * 1e3,
                     "error_pct": 100 * (predicted - first) / first, "noise_pct": 100 * (second - first) / first})
        if progress:
            print(f"[{i:>2}/{len(archs)}] {arch.key():<34} predicted {predicted * 1e3:8.2f} ms  measured "
                  f"{first * 1e3:8.2f} ms  ({rows[-1]['error_pct']:+6.1f}%; again {rows[-1]['noise_pct']:+5.1f}%)",
                  flush=True)
    return rows


def summarize(rows: list[dict]) -> dict:
    """Median and 90th percentile of the table's absolute error and of the noise floor, in %."""
    errors, noise = [abs(r["error_pct"]) for r in rows], [abs(r["noise_pct"]) for r in rows]
    return {"median_abs_error_pct": float(np.percentile(errors, 50)),
            "p90_abs_error_pct": float(np.percentile(errors, 90)),
            "median_abs_noise_pct": float(np.percentile(noise, 50)),
            "p90_abs_noise_pct": float(np.percentile(noise, 90))}


__all__ = ["table_threads", "check_here", "measure_archs", "summarize"]

"""Memory layouts of the dynamic depth-wise conv's folded grouped conv, side by side (issue #10 item 3).

The dynamic DW conv (``DynamicDWConvMixer``) applies a different k x k kernel per sample and channel, which it
runs as one grouped conv with the batch folded into the channels: input (1, B*C, H, W), groups = B*C. Its input
arrives as an NCHW view of NHWC memory (the blocks keep NHWC), so the fold copies. Layouts compared:

* ``nchw`` (the product's form): ``x.reshape(1, B*C, H, W)`` (contiguous NCHW), the output viewed back;
* ``channels_last``: the fold keeps channels last: (H, W, B*C) memory, which cuDNN's NHWC depth-wise
  kernels take, and the output is handed back as a view of that memory.

Two measurements, each interleaved A, B, ..., median of ``--repeats`` after ``--warmup``:

1. the op alone (forward + backward) at DWNet-T's four stage shapes, as a ratio to the static DW conv
   (``groups = C``, the same input);
2. the whole DWNet-T training step (224 px, AdamW) of DWNet-T and of dynamic DWNet-T with each layout, ratio
   to DWNet-T in images/s, per dtype (issue #10 asks >= 0.8 in bf16 on a GPU).

The layouts compute the same numbers (checked here, largest difference printed). The product keeps ``nchw``
(docs/BENCHMARKS.md says why); this script swaps the other into the built networks only.

    python -m benchmarks.dynamic_conv_layouts --out results/benchmarks/dynamic_conv_layouts     # CUDA if present
    python -m benchmarks.dynamic_conv_layouts --device cpu --batch 4 --dtypes fp32
"""
from __future__ import annotations

import argparse
import types
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.bench_common import run, write_rows
from benchmarks.gpu_throughput import (add_step_arguments, autocast, device_name, make_step, published_arch,
                                       resolve_step_arguments, side_by_side)
from searchspace import DEPLOYMENT
from supernet import MixerNet
from supernet.mixers import DynamicDWConvMixer, per_sample_depthwise


def fold_channels_last(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    B, C, H, W = x.shape
    k = weight.shape[-1]
    folded = x.permute(2, 3, 0, 1).reshape(1, H, W, B * C).permute(0, 3, 1, 2)  # (1, B*C, H, W), NHWC memory
    out = F.conv2d(folded, weight.reshape(B * C, 1, k, k), bias.repeat(B), padding=k // 2, groups=B * C)
    return out.permute(0, 2, 3, 1).reshape(H, W, B, C).permute(2, 3, 0, 1)  # a view when cuDNN kept NHWC


LAYOUTS = {"nchw": per_sample_depthwise, "channels_last": fold_channels_last}  # nchw: the product's own function


def use_layout(model: torch.nn.Module, layout: str) -> torch.nn.Module:
    """Swap ``layout``'s fold into every dynamic DW conv of ``model`` (the kernel generator is unchanged)."""
    fold = LAYOUTS[layout]

    def depthwise(self, x: torch.Tensor, kernel: int) -> torch.Tensor:
        return fold(x, self.generate_kernel(x, kernel), self.dw_bias)

    for module in model.modules():
        if isinstance(module, DynamicDWConvMixer):
            module.depthwise = types.MethodType(depthwise, module)
    return model


def nhwc_input(batch: int, channels: int, side: int, device) -> torch.Tensor:
    """An NCHW view of NHWC memory, as the mixer's depth-wise conv receives it."""
    return torch.randn(batch, side, side, channels, device=device).permute(0, 3, 1, 2).requires_grad_()


def op_rows(args, device) -> list[dict]:
    rows = []
    k = 7
    for channels, side in ((96, 56), (192, 28), (384, 14), (768, 7)):
        x = nhwc_input(args.batch, channels, side, device)
        static_w = torch.randn(channels, 1, k, k, device=device, requires_grad=True)
        dyn_w = torch.randn(args.batch, channels, k, k, device=device, requires_grad=True)
        bias = torch.zeros(channels, device=device, requires_grad=True)
        with torch.no_grad():
            reference = per_sample_depthwise(x, dyn_w, bias)
            diff = max(float((fold(x, dyn_w, bias) - reference).abs().max()) for fold in LAYOUTS.values())
        for dtype in args.dtypes:
            def step(fn):
                def go():
                    with autocast(device, dtype):
                        out = fn()
                    out.float().sum().backward()
                return go
            steps = {"static": step(lambda: F.conv2d(x, static_w, bias, padding=k // 2, groups=channels))}
            steps.update({name: step(lambda fold=fold: fold(x, dyn_w, bias)) for name, fold in LAYOUTS.items()})
            seconds = side_by_side(steps, device, args.warmup, args.repeats)
            row = {"section": "op", "dtype": dtype, "batch": args.batch, "channels": channels, "side": side,
                   "kernel": k, "static_ms": round(1e3 * seconds["static"], 3), "max_abs_diff_fp32": diff}
            for name in LAYOUTS:
                row[f"{name}_ms"] = round(1e3 * seconds[name], 3)
                row[f"{name}_over_static"] = round(seconds[name] / seconds["static"], 3)
            rows.append(row)
            print(f"op  {dtype} B{args.batch} C{channels} {side}x{side} k{k}: static {row['static_ms']:.3f} ms; "
                  + ", ".join(f"{n} {row[f'{n}_ms']:.3f} ms ({row[f'{n}_over_static']:.2f}x)" for n in LAYOUTS)
                  + f"; max |diff| {diff:.1e}", flush=True)
    return rows


def network_rows(args, device) -> list[dict]:
    rows = []
    x = torch.randn(args.batch, 3, 224, 224, device=device)
    y = torch.randint(0, 1000, (args.batch,), device=device)
    for dtype in args.dtypes:
        torch.manual_seed(0)
        models = {"dwnet_t": MixerNet.from_arch(published_arch("dwconv"), DEPLOYMENT)}
        for layout in LAYOUTS:
            torch.manual_seed(0)
            models[f"dynamic_{layout}"] = use_layout(MixerNet.from_arch(published_arch("dynamic_dwconv"), DEPLOYMENT),
                                                     layout)
        steps = {name: make_step(model.to(device), "train", dtype, x, y, device) for name, model in models.items()}
        seconds = side_by_side(steps, device, args.warmup, args.repeats)
        ips = {name: args.batch / s for name, s in seconds.items()}
        row = {"section": "network", "dtype": dtype, "batch": args.batch}
        for name, value in ips.items():
            row[f"{name}_img_s"] = round(value, 1)
            if name != "dwnet_t":
                row[f"{name}_over_static"] = round(value / ips["dwnet_t"], 3)
        rows.append(row)
        print(f"net {dtype} B{args.batch}: DWNet-T {ips['dwnet_t']:.1f} img/s; "
              + ", ".join(f"{n} {ips[n]:.1f} ({ips[n] / ips['dwnet_t']:.3f}x)" for n in ips if n != "dwnet_t"),
              flush=True)
        del steps, models
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_step_arguments(parser)
    parser.add_argument("--sections", nargs="+", choices=("op", "network"), default=["op", "network"])
    parser.add_argument("--out", default="results/benchmarks/dynamic_conv_layouts", help="output stem (.json, .csv)")
    args = parser.parse_args()
    device = resolve_step_arguments(args)
    print(f"device: {device_name(device)}; batch {args.batch}, median of {args.repeats} after {args.warmup} warm-up",
          flush=True)
    rows = (op_rows(args, device) if "op" in args.sections else []) + \
        (network_rows(args, device) if "network" in args.sections else [])
    out = Path(args.out)
    path = write_rows(out.parent, out.name, {"device": device_name(device), "batch": args.batch,
                                             "repeats": args.repeats, "warmup": args.warmup}, rows)
    print(f"wrote {path}.json and .csv")
    return 0


if __name__ == "__main__":
    run(main)

"""Training and inference throughput of the published networks and of supernet training, on CUDA or CPU.

Sections (each side by side in one run, interleaved A, B, A, B ..., median of ``--repeats`` timings, as ratios):

1. ``swin``: our Swin-T (``window_attention`` k7, depths 2-2-6-2) vs timm's ``swin_tiny_patch4_window7_224``,
   inference and training step (AdamW), float32 and bf16 autocast. Ratio = ours / timm in images/s.
2. ``dwconv``: DWNet-T vs dynamic DWNet-T (same macro network, ``dwconv`` / ``dynamic_dwconv`` k7), training step,
   float32 and bf16. Ratio = dynamic / static in images/s (issue #10 asks >= 0.8 in bf16 on a GPU).
3. ``extended`` (issue #12): DWNet-T's macro network with the extended space's operators at k7: the
   inhomogeneous dynamic conv (I-D-DWNet-T), linear-angular attention, and DWNet-T with max pooling entries;
   training step. Ratio = each / DWNet-T in images/s.
4. ``supernet``: one epoch of the product's supernet training at the default small setting (embedded digits,
   batch 64, paths within 4.5 GFLOPs) through the real Trainer, with the input path before issue #10 (each
   digit through timm's PIL transform in the main process) and with on-device batches, interleaved, median of
   ``--epoch-repeats``; and the time each loader alone takes for the same epoch. Ratio = on-device / before.

Sizes: 224 px at ``--batch`` (default 64 on CUDA, 4 on CPU, where a Swin-T step takes seconds). The device
(GPU name or CPU model and threads) goes into the output. Latency-table error: benchmarks/latency_table.py;
supernet step vs extracted step: benchmarks/supernet_overhead.py.

    python -m benchmarks.gpu_throughput --out results/benchmarks/gpu_throughput      # CUDA if present
    python -m benchmarks.gpu_throughput --device cpu --sections dwconv supernet
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from PIL import Image
from timm.optim import create_optimizer_v2

from benchmarks.bench_common import run, write_rows
from nas.data.datasets import build_data
from nas.data.loaders import make_loader
from nas.data.tensors import InMemoryImages
from nas.errors import UserError
from nas.settings import DataConfig, ModelOptions, TrainConfig
from nas.train.steps import WorkerContext
from nas.train.trainer import Trainer
from searchspace import DEPLOYMENT, SearchSpace, parse_flops, published_arch
from supernet import MixerNet, make_path_sampler

SECTIONS = ("swin", "dwconv", "supernet", "extended")
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    cpu = platform.processor() or "cpu"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {torch.get_num_threads()} threads (torch {torch.__version__})"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: str):
    if DTYPES[dtype] is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[dtype])


def make_step(model: torch.nn.Module, mode: str, dtype: str, x: torch.Tensor, y: torch.Tensor, device):
    """A callable that runs one inference forward or one training step (forward, loss, backward, AdamW)."""
    if mode == "inference":
        model.eval()

        @torch.no_grad()
        def infer():
            with autocast(device, dtype):
                model(x)
        return infer
    model.train()
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-4, weight_decay=0.05)

    def train():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    return train


def timed(step, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - start


def side_by_side(steps: dict, device: torch.device, warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per step of each named step, interleaved so that drifts in machine load hit all alike."""
    for _ in range(warmup):
        for step in steps.values():
            timed(step, device)
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(timed(step, device))
    return {name: statistics.median(t) for name, t in times.items()}


def compare(section: str, models: dict, modes: tuple[str, ...], args, device) -> list[dict]:
    """Rows: per (mode, dtype) and per model after the first, images/s of both and the ratio model / first
    (all models of a section interleaved in one run)."""
    rows = []
    first = next(iter(models))
    x = torch.randn(args.batch, 3, 224, 224, device=device)
    y = torch.randint(0, 1000, (args.batch,), device=device)
    for mode in modes:
        for dtype in args.dtypes:
            torch.manual_seed(0)
            steps = {name: make_step(make().to(device), mode, dtype, x, y, device) for name, make in models.items()}
            seconds = side_by_side(steps, device, args.warmup, args.repeats)
            ips = {name: args.batch / s for name, s in seconds.items()}
            for second in list(models)[1:]:
                rows.append({"section": section, "mode": mode, "dtype": dtype, "batch": args.batch,
                             f"{first}_img_s": round(ips[first], 1), f"{second}_img_s": round(ips[second], 1),
                             "ratio": round(ips[second] / ips[first], 3), "ratio_is": f"{second} / {first}"})
                print(f"{section:8s} {mode:9s} {dtype}: {first} {ips[first]:8.1f} img/s, {second} "
                      f"{ips[second]:8.1f} img/s, {second}/{first} = {ips[second] / ips[first]:.3f}", flush=True)
            del steps
    return rows


class PerImageDigits(torch.utils.data.Dataset):
    """The input path before issue #10 (the reference): each training digit through timm's PIL transform."""

    def __init__(self, train: InMemoryImages):
        from timm.data import create_transform
        aug = train.augment
        self.images, self.labels = train.images[:, 0].numpy(), train.labels.numpy()
        self.transform = create_transform(train.images.shape[-1], is_training=True, scale=aug.scale,
                                          ratio=aug.ratio, hflip=aug.hflip, color_jitter=None,
                                          interpolation="bilinear", mean=train.mean, std=train.std)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


class PerImageTrainer(Trainer):
    """The Trainer with the old loader: per-image transforms in the main process (``num_workers=0``)."""

    def _loader(self, epoch: int):
        return make_loader(self.data.train, self.cfg.batch_size, shuffle=True, seed=epoch, drop_last=True,
                           num_workers=0)


def supernet_epoch(args, device) -> list[dict]:
    """One real epoch of the default supernet training, per-image PIL input (before) vs on-device batches,
    interleaved; and the time each loader alone takes for the same epoch."""
    data = build_data(DataConfig())
    inputs = {"per-image PIL (before)": (replace(data, train=PerImageDigits(data.train)), PerImageTrainer),
              "on-device batches": (data, Trainer)}
    space = SearchSpace.default()
    settings = ModelOptions().settings(data)
    cfg = TrainConfig(epochs=1, batch_size=64, warmup_epochs=0, amp="bf16" if "bf16" in args.dtypes and
                      device.type == "cuda" else False)
    timings = {name: {"epoch": [], "loader": []} for name in inputs}
    for _ in range(args.epoch_repeats):
        for name, (bundle, trainer_cls) in inputs.items():
            torch.manual_seed(0)
            model = MixerNet(space, settings).to(device)
            sampler = make_path_sampler("spos", space, 0, parse_flops("4.5GFLOPs"))
            with tempfile.TemporaryDirectory() as tmp:
                trainer = trainer_cls(model, bundle, cfg, tmp, path_sampler=sampler,
                                      context=WorkerContext(device=device), progress=False)
                sync(device)
                start = time.perf_counter()
                for x, y in trainer._loader(0):
                    x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                sync(device)
                timings[name]["loader"].append(time.perf_counter() - start)
                timings[name]["epoch"].append(trainer.train_epoch(0)["epoch_time_s"])
    rows = []
    images = (len(data.train) // cfg.batch_size) * cfg.batch_size
    for name, t in timings.items():
        epoch_s, loader_s = statistics.median(t["epoch"]), statistics.median(t["loader"])
        rows.append({"section": "supernet", "mode": f"train epoch, {name}", "dtype": "bf16" if cfg.amp else "fp32",
                     "batch": cfg.batch_size, "images_per_s": round(images / epoch_s, 1),
                     "epoch_s": round(epoch_s, 2), "loader_only_s": round(loader_s, 3),
                     "loader_share": round(loader_s / epoch_s, 3)})
    rows[1]["ratio"] = round(rows[1]["images_per_s"] / rows[0]["images_per_s"], 3)
    for row in rows:
        print(f"supernet epoch ({images} images), {row['mode'].split(', ')[1]}: {row['images_per_s']} img/s, "
              f"{row['epoch_s']} s, loader alone {row['loader_only_s']} s ({100 * row['loader_share']:.0f}%)",
              flush=True)
    print(f"on-device / per-image: {rows[1]['ratio']}x images/s", flush=True)
    return rows


def add_step_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a side-by-side step timing (this script's and dynamic_conv_layouts.py's)."""
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--dtypes", nargs="+", choices=tuple(DTYPES), default=list(DTYPES))
    parser.add_argument("--batch", type=int, default=None, help="images per step (default: 64 on CUDA, 4 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per side (default 5 CUDA, 1 CPU)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per side (default 20 CUDA, 5 CPU)")


def resolve_step_arguments(args: argparse.Namespace) -> torch.device:
    """The device, and the per-device defaults of the step options filled into ``args``."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is visible")
    on_gpu = device.type == "cuda"
    args.batch = args.batch or (64 if on_gpu else 4)
    args.warmup = args.warmup if args.warmup is not None else (5 if on_gpu else 1)
    args.repeats = args.repeats or (20 if on_gpu else 5)
    if on_gpu:
        torch.backends.cudnn.benchmark = True
    return device


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_step_arguments(parser)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--epoch-repeats", type=int, default=2, help="supernet epochs per input path (median)")
    parser.add_argument("--out", default="results/benchmarks/gpu_throughput", help="output stem (.json, .csv)")
    args = parser.parse_args()
    device = resolve_step_arguments(args)
    print(f"device: {device_name(device)}", flush=True)

    rows = []
    if "swin" in args.sections:
        models = {"timm": lambda: timm.create_model("swin_tiny_patch4_window7_224"),
                  "ours": lambda: MixerNet.from_arch(published_arch("window_attention"), DEPLOYMENT)}
        rows += compare("swin", models, ("inference", "train"), args, device)
    if "dwconv" in args.sections:
        models = {"dwnet": lambda: MixerNet.from_arch(published_arch("dwconv"), DEPLOYMENT),
                  "dynamic": lambda: MixerNet.from_arch(published_arch("dynamic_dwconv"), DEPLOYMENT)}
        rows += compare("dwconv", models, ("train",), args, device)
    if "extended" in args.sections:
        models = {"dwnet": lambda: MixerNet.from_arch(published_arch("dwconv"), DEPLOYMENT),
                  "inhomogeneous": lambda: MixerNet.from_arch(published_arch("inhomogeneous_dwconv"), DEPLOYMENT),
                  "linear_angular": lambda: MixerNet.from_arch(published_arch("linear_angular"), DEPLOYMENT),
                  "dwnet_maxpool": lambda: MixerNet.from_arch(published_arch("dwconv", pool_op="maxpool"), DEPLOYMENT)}
        rows += compare("extended", models, ("train",), args, device)
    if "supernet" in args.sections:
        rows += supernet_epoch(args, device)
    summary = {"device": device_name(device), "command": " ".join(sys.argv), "batch": args.batch,
               "warmup": args.warmup, "repeats": args.repeats}
    write_rows(Path(args.out).parent, Path(args.out).name, summary, rows)
    return 0


if __name__ == "__main__":
    run(main)

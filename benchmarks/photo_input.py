"""Supernet training on an image folder of small photos: decoded once into memory vs read file by file.

Both sides are the product's own paths (``nas.data.datasets.build_data(..., in_memory=True / False)``) through the
real Trainer: one SPOS supernet epoch at the default small setting (paths within 4.5 GFLOPs, batch 64), the
epochs interleaved (file by file, in memory, file by file, ...), median of ``--rounds``. File by file is what
image folders did before they were decoded once: each image opened by PIL and put through timm's transform in
DataLoader worker processes (one per core). The ratio is in memory / file by file, in training images/s. The time to
decode the folder (once, then cached) is given too.

    python -m benchmarks.photo_input --data-root ~/data/cifar10 --img-size 32 --train-subset 5000 --rounds 3
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.bench_common import run, write_rows
from nas.data.datasets import build_data
from nas.settings import DataConfig, ModelOptions, TrainConfig
from nas.train.steps import WorkerContext
from nas.train.trainer import Trainer
from searchspace import SearchSpace, parse_flops
from supernet import MixerNet, make_path_sampler

SIDES = ("file by file", "in memory")


def epoch_images_per_s(bundle, cfg: TrainConfig) -> tuple[float, int]:
    space = SearchSpace.default()
    torch.manual_seed(0)
    model = MixerNet(space, ModelOptions().settings(bundle))
    sampler = make_path_sampler("spos", space, 0, parse_flops("4.5GFLOPs"))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, bundle, cfg, tmp, path_sampler=sampler, context=WorkerContext(device="cpu"),
                          progress=False)
        metrics = trainer.train_epoch(0)
    return metrics["images_per_s"], trainer.steps_per_epoch * cfg.batch_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="an image folder (train/<class>/..., val/<class>/...)")
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--train-subset", type=int, default=5000, help="training images an epoch (a fixed choice)")
    parser.add_argument("--rounds", type=int, default=3, help="epochs per side, interleaved (median)")
    parser.add_argument("--out", default="results/benchmarks/photo_input", help="output stem (.json, .csv)")
    args = parser.parse_args()
    data = DataConfig(dataset="imagefolder", root=args.data_root, img_size=args.img_size,
                      train_subset=args.train_subset)
    data.check_folder()
    start = time.perf_counter()
    bundles = {"in memory": build_data(data, in_memory=True)}
    load_s = time.perf_counter() - start
    bundles["file by file"] = build_data(data, in_memory=False)
    cfg = TrainConfig(epochs=1, batch_size=64, warmup_epochs=0)
    rates: dict[str, list[float]] = {side: [] for side in SIDES}
    images = 0
    for r in range(args.rounds):
        for side in SIDES:
            rate, images = epoch_images_per_s(bundles[side], cfg)
            rates[side].append(rate)
            print(f"round {r + 1}: {side}: {rate:.1f} images/s", flush=True)
    medians = {side: statistics.median(v) for side, v in rates.items()}
    ratio = medians["in memory"] / medians["file by file"]
    rows = [{"input": side, "images_per_s": round(medians[side], 1), "rounds": [round(v, 1) for v in rates[side]],
             "epoch_images": images} for side in SIDES]
    rows[1]["ratio"] = round(ratio, 3)
    summary = {"command": " ".join(sys.argv), "cpu": platform.processor() or platform.machine(),
               "cores": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
               "img_size": args.img_size, "train_subset": args.train_subset,
               "build_in_memory_s": round(load_s, 2), "ratio": round(ratio, 3)}
    print(f"supernet epoch of {images} images at {args.img_size} px: in memory {medians['in memory']:.1f} vs file by "
          f"file {medians['file by file']:.1f} images/s: {ratio:.2f}x (in-memory data ready in {load_s:.1f} s)")
    write_rows(Path(args.out).parent, Path(args.out).name, summary, rows)
    return 0


if __name__ == "__main__":
    run(main)

"""Does Castling-ViT's training-only softmax branch help linear-angular attention here? (issue #12)

Castling-ViT trains linear-angular attention together with an auxiliary softmax-attention branch that is
removed for inference. This measures an approximation of it before the product offers it: during
training each ``linear_angular`` mixer adds ``w * proj(softmax(q k^T / sqrt(d)) v)`` (its own q, k, v and
projection weights, no bias), with ``w`` annealed linearly from 1 at the first epoch to 0 at the last, so
the last epoch trains the network exactly as it is evaluated. Both variants train the same arch with the
retrain recipe (10 epochs, embedded digits) for each seed; the test split is read once per run, for this
report. Variants alternate, seed by seed.

    python -m benchmarks.experiments.castling_aux --arch la7x2p1-la5x2p2-la5x6p2-la3x2p2 --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.bench_common import run, write_rows
from nas.data.datasets import build_data
from nas.runs import checkpoint as ckpt
from nas.settings import DataConfig, TrainConfig
from nas.train.evaluate import evaluate
from nas.train.trainer import Trainer
from searchspace import SMALL, Arch, StageChoice
from searchspace.arch import MIXER_SHORT
from supernet import MixerNet
from supernet.mixers import LinearAngularAttentionMixer


class LinearAngularWithSoftmaxAux(LinearAngularAttentionMixer):
    """The mixer plus, in training mode only, ``aux_weight`` times a softmax-attention branch."""

    aux_weight: float = 0.0

    def forward(self, x: torch.Tensor, kernel: int, shift: bool) -> torch.Tensor:
        out = super().forward(x, kernel, shift)
        if not self.training or self.aux_weight == 0:
            return out
        B, H, W, C = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, H * W, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        soft = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, H, W, C)
        return out + self.aux_weight * F.linear(soft, self.proj.weight)


class AnnealedAuxTrainer(Trainer):
    def train_epoch(self, epoch: int) -> dict[str, float]:
        weight = 1.0 - epoch / max(1, self.cfg.epochs - 1)
        for module in self.model.modules():
            if isinstance(module, LinearAngularWithSoftmaxAux):
                module.aux_weight = weight
        return {**super().train_epoch(epoch), "aux_weight": weight}


def parse_key(key: str) -> Arch:
    """An arch key (``la7x2p1-...``, pool op suffix ``mp``) back to the arch."""
    mixers = {short: name for name, short in MIXER_SHORT.items()}
    stages = []
    for part in key.split("-"):
        mixer, rest = mixers[part[:2]], part[2:]
        kernel, rest = rest.split("x")
        depth, pool = rest.split("p")
        op = "maxpool" if pool.endswith("mp") else "merge"
        stages.append(StageChoice(mixer, int(kernel), int(depth), int(pool.removesuffix("mp")), op))
    return Arch(tuple(stages))


def train_once(arch: Arch, seed: int, aux: bool, data, epochs: int) -> dict:
    ckpt.seed_everything(seed)
    model = MixerNet.from_arch(arch, SMALL)
    if aux:
        for module in model.modules():
            if type(module) is LinearAngularAttentionMixer:
                module.__class__ = LinearAngularWithSoftmaxAux   # same parameters, one more training term
    cfg = TrainConfig(epochs=epochs, batch_size=64, seed=seed)   # the retrain defaults
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = (AnnealedAuxTrainer if aux else Trainer)(model, data, cfg, run_dir, progress=False)
        start = time.perf_counter()
        history = trainer.fit()
    model.eval()
    test = evaluate(model, data.test, batch_size=256)
    return {"variant": "aux" if aux else "plain", "seed": seed, "val_top1": history[-1]["val_top1"],
            "test_top1": test["top1"], "train_s": round(time.perf_counter() - start, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="la7x2p1-la5x2p2-la5x6p2-la3x2p2", help="an arch key")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="results/benchmarks/castling_aux")
    args = parser.parse_args()
    arch = parse_key(args.arch)
    data = build_data(DataConfig())
    rows = []
    for seed in args.seeds:
        for aux in (False, True):
            row = train_once(arch, seed, aux, data, args.epochs)
            rows.append(row)
            print(f"{row['variant']:5s} seed {seed}: test top-1 {row['test_top1']:.4f}, validation "
                  f"{row['val_top1']:.4f} ({row['train_s']:.0f}s)", flush=True)
    summary = {"arch": arch.key(), "epochs": args.epochs, "command": " ".join(sys.argv)}
    for variant in ("plain", "aux"):
        tops = [r["test_top1"] for r in rows if r["variant"] == variant]
        summary[f"{variant}_test_top1_mean"] = statistics.mean(tops)
        summary[f"{variant}_test_top1_range"] = [min(tops), max(tops)]
    print(f"{arch.key()}: plain {summary['plain_test_top1_mean']:.4f} {summary['plain_test_top1_range']}, "
          f"aux {summary['aux_test_top1_mean']:.4f} {summary['aux_test_top1_range']} (test top-1, mean [range])")
    write_rows(Path(args.out).parent, Path(args.out).name, summary, rows)
    return 0


if __name__ == "__main__":
    run(main)

"""Analytic FLOPs and parameters of an arch: no network built, microseconds per arch.

The rules mirror fvcore's counting on the networks of ``supernet.network`` (one multiply-add is
one FLOP; linear = tokens * in * out; conv = prod(weight shape) * output pixels; LayerNorm 5 and
eval-mode BatchNorm 2 FLOPs per element; matmul counted; elementwise ops, softmax, mean,
L2 normalisation and max pooling free),
so the two agree exactly; tests/searchspace/test_cost.py checks that on random archs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .mixers import MIXERS, MixerSpec, register
from .settings import NetSettings

if TYPE_CHECKING:  # types only: arch.py and space.py import this module, for the mixer registry it fills
    from .arch import Arch, StageChoice

LN, BN = 5, 2  # fvcore FLOPs per element of an affine LayerNorm / eval-mode affine BatchNorm


@dataclass(frozen=True)
class Cost:
    flops: int
    params: int

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.params + other.params)


ZERO = Cost(0, 0)


def attention_window(kernel: int, resolution: int) -> int:
    """Swin's rule: a window no larger than the map is the whole map (and then no shift)."""
    return min(kernel, resolution)


def padded(resolution: int, window: int) -> int:
    return math.ceil(resolution / window) * window


def _mlp(dim: int, hidden: int, tokens: int) -> Cost:
    return Cost(2 * tokens * dim * hidden, dim * hidden + hidden + hidden * dim + dim)


def _window_attention(dim: int, kernel: int, res: int, s: NetSettings) -> Cost:
    tokens = res * res
    window = attention_window(kernel, res)
    padded_tokens = padded(res, window) ** 2
    win_tokens = window * window
    flops = LN * dim * tokens + padded_tokens * (4 * dim * dim + 2 * dim * win_tokens)
    # The bias table is sized for the arch's kernel, not the clamped window: at the deployment
    # setting no window is ever clamped, and a smaller map uses the table's centre.
    params = 2 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + (2 * kernel - 1) ** 2 * s.num_heads(dim)
    return Cost(flops, params) + Cost(LN * dim * tokens, 2 * dim)  # + the FFN's LayerNorm


def _dwconv(dim: int, kernel: int, res: int, s: NetSettings) -> Cost:
    tokens = res * res
    flops = 2 * tokens * dim * dim + 3 * BN * dim * tokens + dim * kernel * kernel * tokens
    params = 2 * dim * dim + 3 * 2 * dim + dim * kernel * kernel + dim
    return Cost(flops, params) + Cost(BN * dim * tokens, 2 * dim)  # + the FFN's BatchNorm


def _dynamic_dwconv(dim: int, kernel: int, res: int, s: NetSettings) -> Cost:
    reduced = max(1, dim // 4)
    kk = kernel * kernel
    generator = Cost(dim * reduced + BN * reduced + reduced * dim * kk,
                     dim * reduced + 2 * reduced + reduced * dim * kk + dim * kk)
    no_static_kernel = Cost(0, -dim * kk)  # the kernel is generated; only the conv's bias is static
    return _dwconv(dim, kernel, res, s) + generator + no_static_kernel


def _linear_angular(dim: int, kernel: int, res: int, s: NetSettings) -> Cost:
    tokens = res * res
    head_dim = dim // s.num_heads(dim)
    # K^T V and Q (K^T V): tokens * dim * head_dim each; Q (sum_j K_j): tokens * dim; the DW conv on V.
    attention = 2 * tokens * dim * head_dim + tokens * dim + dim * kernel * kernel * tokens
    flops = LN * dim * tokens + tokens * 4 * dim * dim + attention
    params = 2 * dim + (3 * dim * dim + 3 * dim) + dim * kernel * kernel + (dim * dim + dim)
    return Cost(flops, params) + Cost(LN * dim * tokens, 2 * dim)  # + the FFN's LayerNorm


def inhomogeneous_groups(dim: int, s: NetSettings) -> int:
    """Kernel groups of the inhomogeneous dynamic conv: the authors pass the head count as the channels
    per group, so there are dim // heads groups (32 at every stage of the -T model)."""
    return dim // s.num_heads(dim)


def _inhomogeneous_dwconv(dim: int, kernel: int, res: int, s: NetSettings) -> Cost:
    tokens = res * res
    reduced, kk, groups = max(1, dim // 4), kernel * kernel, inhomogeneous_groups(dim, s)
    # A generator at every position: Linear C -> C/4 (bias) -> BN -> ReLU -> Linear C/4 -> groups*k*k.
    generator = Cost(tokens * (dim * reduced + BN * reduced + reduced * groups * kk),
                     dim * reduced + reduced + 2 * reduced + reduced * groups * kk + groups * kk)
    no_static_kernel = Cost(0, -dim * kk - dim)  # the kernel is generated, and the op has no bias
    return _dwconv(dim, kernel, res, s) + generator + no_static_kernel


# The mixer registry (searchspace/mixers.py): every mixer, its short key, its cost rule above, whether it holds a
# depth-wise conv, whether it shifts. Swin, DWNet, dynamic DWNet, Castling-ViT, I-D-DWNet.
register(
    MixerSpec("window_attention", "wa", _window_attention, conv=False, shiftable=True),
    MixerSpec("dwconv", "dw", _dwconv, conv=True, shiftable=False),
    MixerSpec("dynamic_dwconv", "dd", _dynamic_dwconv, conv=True, shiftable=False),
    MixerSpec("linear_angular", "la", _linear_angular, conv=True, shiftable=False),
    MixerSpec("inhomogeneous_dwconv", "id", _inhomogeneous_dwconv, conv=True, shiftable=False),
)
MIXER_COSTS = {name: spec.cost for name, spec in MIXERS.items()}  # the old name of the cost rules: a view


def stem_cost(s: NetSettings) -> Cost:
    res = s.img_size // s.patch_size
    conv = Cost(s.embed_dim * s.in_chans * s.patch_size ** 2 * res * res,
                s.embed_dim * s.in_chans * s.patch_size ** 2 + s.embed_dim)
    return conv + Cost(LN * s.embed_dim * res * res, 2 * s.embed_dim)


def transition_cost(in_dim: int, dim: int, pool: int, res: int, pool_op: str = "merge") -> tuple[Cost, int]:
    """Cost of a stage entry and the resolution after it."""
    if pool == 2 and pool_op == "maxpool":  # max pool 3x3 / 2 / pad 1 (comparisons: free), then the width change
        return transition_cost(in_dim, dim, 1, math.ceil(res / 2))
    if pool == 2:  # patch merging: 2x2 neighbourhood concatenated, LayerNorm(4C), Linear(4C -> dim)
        out = math.ceil(res / 2)
        return Cost(LN * 4 * in_dim * out * out + out * out * 4 * in_dim * dim, 2 * 4 * in_dim + 4 * in_dim * dim), out
    if in_dim == dim:
        return ZERO, res
    return Cost(LN * in_dim * res * res + res * res * in_dim * dim, 2 * in_dim + in_dim * dim), res


def block_cost(choice: StageChoice, dim: int, res: int, s: NetSettings) -> Cost:
    return MIXERS[choice.mixer].cost(dim, choice.kernel, res, s) + _mlp(dim, s.mlp_hidden(dim), res * res)


def stage_cost(choice: StageChoice, in_dim: int, dim: int, res: int, s: NetSettings) -> tuple[Cost, int]:
    cost, res = transition_cost(in_dim, dim, choice.pool, res, choice.pool_op)
    block = block_cost(choice, dim, res, s)
    return cost + Cost(block.flops * choice.depth, block.params * choice.depth), res


def head_cost(dim: int, res: int, s: NetSettings) -> Cost:
    return Cost(LN * dim * res * res + dim * s.num_classes, 2 * dim + dim * s.num_classes + s.num_classes)


def stage_resolutions(arch: Arch, s: NetSettings) -> tuple[int, ...]:
    """The token-map side of each stage after its entry."""
    res, out = s.img_size // s.patch_size, []
    for choice in arch.stages:
        res = math.ceil(res / 2) if choice.pool == 2 else res
        out.append(res)
    return tuple(out)


def arch_cost(arch: Arch, s: NetSettings) -> Cost:
    dims = s.stage_dims(len(arch.stages))
    total, res, in_dim = stem_cost(s), s.img_size // s.patch_size, s.embed_dim
    for choice, dim in zip(arch.stages, dims):
        cost, res = stage_cost(choice, in_dim, dim, res, s)
        total, in_dim = total + cost, dim
    return total + head_cost(in_dim, res, s)

"""Analytic FLOPs and parameters of an arch: no network built, microseconds per arch.

The rules mirror fvcore's counting on the networks of ``supernet.network`` (one multiply-add is
one FLOP; linear = tokens * in * out; conv = prod(weight shape) * output pixels; LayerNorm 5 and
eval-mode BatchNorm 2 FLOPs per element; matmul counted; elementwise ops, softmax, mean,
L2 normalisation and max pooling free),
so the two agree exactly; tests/searchspace/test_cost.py checks that on random archs.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from .arch import Arch, StageChoice
from .budget import format_flops
from .errors import SpaceError
from .settings import NetSettings
from .space import SearchSpace

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


MIXER_COSTS = {
    "window_attention": _window_attention,
    "dwconv": _dwconv,
    "dynamic_dwconv": _dynamic_dwconv,
    "linear_angular": _linear_angular,
    "inhomogeneous_dwconv": _inhomogeneous_dwconv,
}


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
    return MIXER_COSTS[choice.mixer](dim, choice.kernel, res, s) + _mlp(dim, s.mlp_hidden(dim), res * res)


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


def extreme_archs(space: SearchSpace, s: NetSettings) -> tuple[Arch, Arch]:
    """The cheapest and the dearest arch by FLOPs, exactly, by dynamic programming over the
    resolution entering each stage (a stage's cost depends only on that and its own choice)."""
    dims = s.stage_dims(space.num_stages)
    results = []
    for better in (lambda a, b: a < b, lambda a, b: a > b):
        # state: resolution -> (flops so far, choices so far)
        states = {s.img_size // s.patch_size: (stem_cost(s).flops, ())}
        in_dim = s.embed_dim
        for stage, dim in zip(space.stages, dims):
            nxt: dict[int, tuple[int, tuple]] = {}
            for res, (flops, chosen) in states.items():
                for choice in stage:
                    cost, out = stage_cost(choice, in_dim, dim, res, s)
                    cand = (flops + cost.flops, chosen + (choice,))
                    if out not in nxt or better(cand[0], nxt[out][0]):
                        nxt[out] = cand
            states, in_dim = nxt, dim
        finals = [(f + head_cost(in_dim, r, s).flops, c) for r, (f, c) in states.items()]
        best = finals[0]
        for cand in finals[1:]:
            if better(cand[0], best[0]):
                best = cand
        results.append(Arch(best[1]))
    return results[0], results[1]


def check_budget_covers_cheapest(space: SearchSpace, s: NetSettings, budget_flops: float, what: str) -> None:
    """SpaceError when no arch of ``space`` meets ``budget_flops`` at ``s``; ``what`` names the budget in the message.

    One rule for every budget that selects archs: the search's, a supernet's path budget, check-ranking's band."""
    cheapest = arch_cost(extreme_archs(space, s)[0], s).flops
    if cheapest > budget_flops:
        hint = ""
        if budget_flops < 1e3:  # a unit left out (`--budget 4.5`), not a price anyone means
            hint = f": a number without a unit counts FLOPs, did you mean {budget_flops:g}GFLOPs?"
        raise SpaceError(f"{what} is below the cheapest arch of the space ({format_flops(cheapest)} FLOPs){hint}")


def _stage_paths(space: SearchSpace, s: NetSettings, first: int, last: int, in_dim: int,
                 res: int) -> dict[int, list[tuple[int, tuple]]]:
    """Every choice sequence of stages ``first..last-1`` entered at resolution ``res`` with ``in_dim`` channels:
    output resolution -> [(FLOPs, choices)], in the space's order of choices."""
    dims = s.stage_dims(space.num_stages)
    paths: dict[int, list[tuple[int, tuple]]] = {res: [(0, ())]}
    for index in range(first, last):
        dim_in = in_dim if index == first else dims[index - 1]
        nxt: dict[int, list[tuple[int, tuple]]] = {}
        for r, partial in paths.items():
            for choice in space.stages[index]:
                cost, out = stage_cost(choice, dim_in, dims[index], r, s)
                nxt.setdefault(out, []).extend((f + cost.flops, c + (choice,)) for f, c in partial)
        paths = nxt
    return paths


def dearest_arch_within(space: SearchSpace, s: NetSettings, max_flops: float) -> Arch | None:
    """The arch with the most FLOPs not above ``max_flops``, exactly; None if even the cheapest is dearer.

    Meet in the middle: every choice sequence of the first half of the stages, and of the second half for each
    resolution a first half can leave; each first half is paired with the dearest second half that fits by a
    binary search. The default space's 1.7 million archs take well under a second this way. Of equally dear
    archs the first found wins, so the answer is deterministic."""
    dims = s.stage_dims(space.num_stages)
    half = space.num_stages // 2
    room = max_flops - stem_cost(s).flops
    in_dim = dims[half - 1] if half else s.embed_dim  # entering the second half
    best: tuple[int, tuple] | None = None
    for res, firsts in _stage_paths(space, s, 0, half, s.embed_dim, s.img_size // s.patch_size).items():
        seconds = sorted(((f + head_cost(dims[-1], r, s).flops, c)
                          for r, ends in _stage_paths(space, s, half, space.num_stages, in_dim, res).items()
                          for f, c in ends), key=lambda fc: fc[0])  # stable: ties keep the space's order
        second_flops = [f for f, _ in seconds]
        for f, c in firsts:
            i = bisect.bisect_right(second_flops, room - f) - 1
            if i < 0:
                continue
            i = bisect.bisect_left(second_flops, second_flops[i])  # the first of equally dear second halves
            if best is None or f + second_flops[i] > best[0]:
                best = (f + second_flops[i], c + seconds[i][1])
    return Arch(best[1]) if best else None

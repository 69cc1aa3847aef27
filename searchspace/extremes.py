"""Exact searches of a space by cost: its cheapest and dearest archs, the dearest within a FLOP limit, its fewest
parameters. Exact, not sampled: each stage's cost depends only on its own choice and the resolution entering it."""
from __future__ import annotations

import bisect

from .arch import Arch
from .cost import head_cost, stage_cost, stem_cost
from .settings import NetSettings
from .space import SearchSpace


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


def fewest_params(space: SearchSpace, s: NetSettings) -> int:
    """The fewest parameters of any arch of ``space``, exactly: no parameter count depends on a resolution, so it
    is the stem and head plus each stage's least, whatever the other stages choose."""
    dims, res = s.stage_dims(space.num_stages), s.img_size // s.patch_size  # any resolution: params ignore it
    total, in_dim = stem_cost(s).params + head_cost(dims[-1], res, s).params, s.embed_dim
    for stage, dim in zip(space.stages, dims):
        total, in_dim = total + min(stage_cost(choice, in_dim, dim, res, s)[0].params for choice in stage), dim
    return total

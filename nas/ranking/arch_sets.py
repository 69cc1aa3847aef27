"""Which archs a ranking check trains alone: a stated rule over the archs within a budget, or a file.

Torch-free, like the rest of what a command checks before its heavy imports: ``check-ranking`` draws (or reads and
validates) its archs against the supernet's space in milliseconds, and a bad file or budget is refused before
torch and Ray are imported."""
from __future__ import annotations

import random
from pathlib import Path

from nas.errors import UserError
from nas.settings import DRAWS
from searchspace import DEPLOYMENT, Arch, Budget, SearchSpace, arch_cost, format_flops
from searchspace.arch import read_json_file


def band_archs(space: SearchSpace, budget: Budget, count: int, *, draws: int = DRAWS, seed: int = 0) -> list[Arch]:
    """``count`` (at least 2) archs spread over the archs within ``budget``: of ``draws`` uniform draws
    (``random.Random(seed)``), the distinct ones within it at the deployment setting, sorted by FLOPs, taken at
    evenly spaced quantiles (the cheapest and the dearest included)."""
    if count < 2:
        raise UserError(f"--archs {count}: a ranking needs at least 2 archs")
    budget.check_covers_cheapest(space, f"budget {budget.flops:.4g} FLOPs")
    rng, pool = random.Random(seed), {}
    for _ in range(draws):
        arch = space.sample(rng)
        cost = arch_cost(arch, DEPLOYMENT)
        if budget.admits(cost):
            pool[arch.key()] = (cost.flops, arch)
    ordered = [arch for _, arch in sorted(pool.values(), key=lambda t: (t[0], t[1].key()))]
    if len(ordered) < count:
        raise UserError(f"only {len(ordered)} distinct archs within {format_flops(budget.flops)} FLOPs in {draws} "
                        f"draws: ask for fewer archs or raise the budget")
    return [ordered[round(i * (len(ordered) - 1) / (count - 1))] for i in range(count)]


def read_archs_file(path: str | Path, space: SearchSpace) -> list[Arch]:
    """Archs from a JSON file: ``{"archs": [{"stages": [...]}, ...]}`` (a ranking.json works too)."""
    data = read_json_file(path)
    items = data.get("archs") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) < 2:
        raise UserError(f"{path}: expected an object with an 'archs' list of at least 2 arch objects")
    archs = []
    for i, item in enumerate(items, start=1):
        source = f"{path}: arch {i}"
        arch = Arch.from_dict({"stages": item.get("stages")} if isinstance(item, dict) else item, source=source)
        archs.append(space.validate(arch, source=source))
    keys = [a.key() for a in archs]
    if len(set(keys)) != len(keys):
        raise UserError(f"{path}: the same arch is listed twice")
    return archs


__all__ = ["DRAWS", "band_archs", "read_archs_file"]

"""Which paths of the supernet a training step runs. Each sampler owns a seeded RNG.

``spos``: one uniformly random path per step (single-path one-shot).
``sandwich``: the largest and the smallest arch plus ``num_random`` random ones per step, their
gradients accumulated (BigNAS). Largest and smallest are by FLOPs at the deployment setting; under
``max_flops`` the largest is the dearest arch within it (found exactly, ``dearest_arch_within``).
The largest comes first, so a trainer can distil it into the others in place.

``max_flops`` focuses the random paths on the archs a search under that budget can pick: uniform
over the archs whose FLOPs at the deployment setting are within it (rejection sampling; the cost
is exact and takes microseconds). Under 4.5 GFLOPs that is 19% of the default space: a supernet
trained on all of it spends four steps in five on archs the search must reject (docs/BENCHMARKS.md).
"""
from __future__ import annotations

import random

from searchspace import DEPLOYMENT, Arch, Budget, NetSettings, SearchSpace, dearest_arch_within, extreme_archs

SAMPLERS = ("spos", "sandwich")


class PathSampler:
    """Base: ``paths()`` returns the archs of the next training step."""

    def __init__(self, space: SearchSpace, seed: int, max_flops: float | None = None,
                 cost_settings: NetSettings = DEPLOYMENT) -> None:
        self.space = space
        self.rng = random.Random(seed)
        self.budget, self.cost_settings = Budget(flops=max_flops), cost_settings
        if max_flops is not None:
            self.budget.check_covers_cheapest(space, f"path budget {max_flops:.4g} FLOPs", cost_settings)

    @property
    def max_flops(self) -> float | None:
        return self.budget.flops

    def paths(self) -> list[Arch]:
        raise NotImplementedError

    def sample(self) -> Arch:
        """A uniformly random arch of the space, within the budget (``max_flops``) if set."""
        while True:
            arch = self.space.sample(self.rng)
            if self.budget.admits_arch(arch, self.cost_settings):
                return arch

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))


class UniformPathSampler(PathSampler):
    def paths(self) -> list[Arch]:
        return [self.sample()]


class SandwichPathSampler(PathSampler):
    def __init__(self, space: SearchSpace, seed: int, num_random: int = 1, max_flops: float | None = None,
                 cost_settings: NetSettings = DEPLOYMENT) -> None:
        super().__init__(space, seed, max_flops, cost_settings)
        self.num_random = num_random
        self.smallest, self.largest = extreme_archs(space, cost_settings)
        if max_flops is not None:
            self.largest = dearest_arch_within(space, cost_settings, max_flops)

    def paths(self) -> list[Arch]:
        return [self.largest, self.smallest] + [self.sample() for _ in range(self.num_random)]


def make_path_sampler(name: str, space: SearchSpace, seed: int, max_flops: float | None = None) -> PathSampler:
    if name == "spos":
        return UniformPathSampler(space, seed, max_flops)
    if name == "sandwich":
        return SandwichPathSampler(space, seed, max_flops=max_flops)
    raise ValueError(f"unknown path sampler {name!r} (choose from {', '.join(SAMPLERS)})")

"""Which paths of the supernet a training step runs. Each sampler owns a seeded RNG.

``spos``: one uniformly random path per step (single-path one-shot).
``sandwich``: the largest and the smallest arch plus ``num_random`` random ones per step, their
gradients accumulated (BigNAS). Largest and smallest are by FLOPs at the deployment setting.
"""
from __future__ import annotations

import random

from searchspace import DEPLOYMENT, Arch, NetSettings, SearchSpace, extreme_archs

SAMPLERS = ("spos", "sandwich")


class PathSampler:
    """Base: ``paths()`` returns the archs of the next training step."""

    def __init__(self, space: SearchSpace, seed: int) -> None:
        self.space = space
        self.rng = random.Random(seed)

    def paths(self) -> list[Arch]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))


class UniformPathSampler(PathSampler):
    def paths(self) -> list[Arch]:
        return [self.space.sample(self.rng)]


class SandwichPathSampler(PathSampler):
    def __init__(self, space: SearchSpace, seed: int, num_random: int = 1,
                 cost_settings: NetSettings = DEPLOYMENT) -> None:
        super().__init__(space, seed)
        self.num_random = num_random
        self.smallest, self.largest = extreme_archs(space, cost_settings)

    def paths(self) -> list[Arch]:
        return [self.largest, self.smallest] + [self.space.sample(self.rng) for _ in range(self.num_random)]


def make_path_sampler(name: str, space: SearchSpace, seed: int) -> PathSampler:
    if name == "spos":
        return UniformPathSampler(space, seed)
    if name == "sandwich":
        return SandwichPathSampler(space, seed)
    raise ValueError(f"unknown path sampler {name!r} (choose from {', '.join(SAMPLERS)})")

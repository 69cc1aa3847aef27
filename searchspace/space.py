"""The search space: per stage, the mixers, kernel sizes, depths and pooling ratios to choose from.

The default lives in ``default_space.json``; a user may pass a file of the same format. The space
knows choices only: no tensors. Costs are in ``cost.py``.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import random
from dataclasses import dataclass
from importlib import resources
from typing import Any, Iterator

from .arch import Arch, StageChoice, read_json_file
from .errors import SpaceError

# Mixers the supernet implements; a new mixer is a module in supernet/mixers.py plus a cost rule
# in cost.py plus its name here.
KNOWN_MIXERS = ("window_attention", "dwconv", "dynamic_dwconv")
# Conv mixers pad k // 2 on each side, which keeps the resolution only for odd k.
CONV_MIXERS = ("dwconv", "dynamic_dwconv")
FIELDS = (("mixer", "mixers"), ("kernel", "kernels"), ("depth", "depths"), ("pool", "pools"))


@dataclass(frozen=True)
class StageSpace:
    mixers: tuple[str, ...]
    kernels: tuple[int, ...]
    depths: tuple[int, ...]
    pools: tuple[int, ...]

    def choices(self, field: str) -> tuple:
        return getattr(self, dict(FIELDS)[field])

    def size(self) -> int:
        return len(self.mixers) * len(self.kernels) * len(self.depths) * len(self.pools)

    def __iter__(self) -> Iterator[StageChoice]:
        for m, k, d, p in itertools.product(self.mixers, self.kernels, self.depths, self.pools):
            yield StageChoice(m, k, d, p)


@dataclass(frozen=True)
class SearchSpace:
    stages: tuple[StageSpace, ...]

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def default(cls) -> "SearchSpace":
        text = resources.files(__package__).joinpath("default_space.json").read_text()
        return cls.from_dict(json.loads(text), source="default space")

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "SearchSpace":
        return cls.from_dict(read_json_file(path), source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "space") -> "SearchSpace":
        if not isinstance(data, dict) or not isinstance(data.get("stages"), list) or not data["stages"]:
            raise SpaceError(f"{source}: expected a JSON object with a non-empty 'stages' list")
        stages = []
        for i, stage in enumerate(data["stages"], start=1):
            if not isinstance(stage, dict):
                raise SpaceError(f"{source}: stage {i}: expected an object")
            values = {}
            for _, plural in FIELDS:
                v = stage.get(plural)
                if not isinstance(v, list) or not v:
                    raise SpaceError(f"{source}: stage {i}: '{plural}' must be a non-empty list")
                if len(set(v)) != len(v):
                    raise SpaceError(f"{source}: stage {i}: '{plural}' has duplicates")
                values[plural] = tuple(v)
            for m in values["mixers"]:
                if m not in KNOWN_MIXERS:
                    raise SpaceError(f"{source}: stage {i}: unknown mixer {m!r} (known: {', '.join(KNOWN_MIXERS)})")
            for plural in ("kernels", "depths", "pools"):
                if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values[plural]):
                    raise SpaceError(f"{source}: stage {i}: '{plural}' must hold positive integers")
            if any(p not in (1, 2) for p in values["pools"]):
                raise SpaceError(f"{source}: stage {i}: 'pools' may hold 1 and 2 only")
            if i == 1 and values["pools"] != (1,):
                raise SpaceError(f"{source}: stage 1: 'pools' must be [1] (the stem already patchifies)")
            if set(values["mixers"]) & set(CONV_MIXERS) and any(k % 2 == 0 for k in values["kernels"]):
                raise SpaceError(f"{source}: stage {i}: conv mixers need odd kernels")
            stages.append(StageSpace(**values))
        return cls(tuple(stages))

    @classmethod
    def singleton(cls, arch: Arch) -> "SearchSpace":
        """The space holding exactly ``arch``: a standalone network is the network of this space."""
        return cls(tuple(StageSpace((s.mixer,), (s.kernel,), (s.depth,), (s.pool,)) for s in arch.stages))

    def to_dict(self) -> dict[str, Any]:
        return {"stages": [{plural: list(s.choices(f)) for f, plural in FIELDS} for s in self.stages]}

    # --- queries ------------------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def size(self) -> int:
        return math.prod(s.size() for s in self.stages)

    def validate(self, arch: Arch, source: str = "arch") -> Arch:
        """Return ``arch`` if every choice is in the space, else raise SpaceError naming stage and field."""
        if len(arch.stages) != self.num_stages:
            raise SpaceError(f"{source}: expected {self.num_stages} stages, got {len(arch.stages)}")
        for i, (choice, stage) in enumerate(zip(arch.stages, self.stages), start=1):
            for field, _ in FIELDS:
                value, allowed = getattr(choice, field), stage.choices(field)
                if value not in allowed:
                    raise SpaceError(
                        f"{source}: stage {i}: field '{field}': {value!r} is not one of {list(allowed)}")
        return arch

    def sample(self, rng: random.Random) -> Arch:
        """A uniformly random arch; all randomness comes from ``rng``."""
        return Arch(tuple(
            StageChoice(rng.choice(s.mixers), rng.choice(s.kernels), rng.choice(s.depths), rng.choice(s.pools))
            for s in self.stages))

    def __iter__(self) -> Iterator[Arch]:
        for combo in itertools.product(*(list(s) for s in self.stages)):
            yield Arch(tuple(combo))

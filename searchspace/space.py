"""The search space: per stage, the mixers, kernel sizes, depths and pooling ratios to choose from.

Built-in spaces live in ``spaces/<name>.json`` (``default``: the three mixers of Swin, DWNet and dynamic
DWNet; ``extended``: also linear-angular attention, the inhomogeneous dynamic conv and HVT's max
pooling); a user may pass a file of the same format. The space knows choices only: no tensors. Costs
are in ``cost.py``.
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

from .arch import DEFAULT_POOL_OP, POOL_OPS, Arch, StageChoice, read_json_file
from .cost import MIXERS  # the mixer registry (mixers.py) as cost.py fills it, beside the cost rules
from .errors import SpaceError
from .mixers import mixer_spec

# The old names of the registry's mixers and of its conv mixers (odd kernels only): views.
KNOWN_MIXERS = tuple(MIXERS)
CONV_MIXERS = tuple(name for name, spec in MIXERS.items() if spec.conv)
FIELDS = (("mixer", "mixers"), ("kernel", "kernels"), ("depth", "depths"), ("pool", "pools"))
# Optional in a space file: how a pool-2 entry pools. Absent means ["merge"], and ``to_dict`` then
# leaves it out, so the hash of every existing space (and of the supernets trained on it) is unchanged.
OPTIONAL_FIELDS = (("pool_op", "pool_ops"),)
BUILTIN_SPACES = ("default", "extended", "tiny")


@dataclass(frozen=True)
class StageSpace:
    mixers: tuple[str, ...]
    kernels: tuple[int, ...]
    depths: tuple[int, ...]
    pools: tuple[int, ...]
    pool_ops: tuple[str, ...] = (DEFAULT_POOL_OP,)

    def choices(self, field: str) -> tuple:
        return getattr(self, dict(FIELDS + OPTIONAL_FIELDS)[field])

    @property
    def offers_pool_ops(self) -> bool:
        """Whether a pool-2 entry here may be something other than patch merging."""
        return self.pool_ops != (DEFAULT_POOL_OP,)

    def entries(self) -> tuple[tuple[int, str], ...]:
        """The (pool, pool_op) pairs of this stage; pool 1 has one entry whatever the pool ops."""
        return tuple((p, op) for p in self.pools for op in ((DEFAULT_POOL_OP,) if p == 1 else self.pool_ops))

    def size(self) -> int:
        return len(self.mixers) * len(self.kernels) * len(self.depths) * len(self.entries())

    def __iter__(self) -> Iterator[StageChoice]:
        for m, k, d, (p, op) in itertools.product(self.mixers, self.kernels, self.depths, self.entries()):
            yield StageChoice(m, k, d, p, op)


@dataclass(frozen=True)
class SearchSpace:
    stages: tuple[StageSpace, ...]

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def default(cls) -> "SearchSpace":
        return cls.builtin("default")

    @classmethod
    def builtin(cls, name: str) -> "SearchSpace":
        if name not in BUILTIN_SPACES:
            raise SpaceError(f"no built-in space {name!r} (built-in: {', '.join(BUILTIN_SPACES)})")
        text = resources.files(__package__).joinpath("spaces", f"{name}.json").read_text()
        return cls.from_dict(json.loads(text), source=f"{name} space")

    @classmethod
    def load(cls, name_or_path: str | os.PathLike | None) -> "SearchSpace":
        """A built-in space by name (None: the default), else a space file."""
        if name_or_path is None:
            return cls.default()
        name = str(name_or_path)
        if name in BUILTIN_SPACES:
            return cls.builtin(name)
        if not os.path.exists(name) and os.sep not in name and not name.endswith(".json"):
            raise SpaceError(f"space {name!r}: neither a built-in space ({', '.join(BUILTIN_SPACES)}) nor a file")
        return cls.from_file(name)

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
            unknown = sorted(set(stage) - {p for _, p in FIELDS + OPTIONAL_FIELDS} - {"_comment"})
            if unknown:
                raise SpaceError(f"{source}: stage {i}: unknown field '{unknown[0]}'")
            if "pool_ops" in stage:
                ops = stage["pool_ops"]
                if not isinstance(ops, list) or not ops or any(op not in POOL_OPS for op in ops) \
                        or len(set(ops)) != len(ops):
                    raise SpaceError(f"{source}: stage {i}: 'pool_ops' must be a non-empty list of distinct "
                                     f"values from {list(POOL_OPS)}")
                values["pool_ops"] = tuple(ops)
            for m in values["mixers"]:
                try:
                    mixer_spec(m)
                except SpaceError as e:
                    raise SpaceError(f"{source}: stage {i}: {e}") from None
            for plural in ("kernels", "depths", "pools"):
                if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values[plural]):
                    raise SpaceError(f"{source}: stage {i}: '{plural}' must hold positive integers")
            if any(p not in (1, 2) for p in values["pools"]):
                raise SpaceError(f"{source}: stage {i}: 'pools' may hold 1 and 2 only")
            if i == 1 and values["pools"] != (1,):
                raise SpaceError(f"{source}: stage 1: 'pools' must be [1] (the stem already patchifies)")
            if any(MIXERS[m].conv for m in values["mixers"]) and any(k % 2 == 0 for k in values["kernels"]):
                raise SpaceError(f"{source}: stage {i}: conv mixers need odd kernels")
            stages.append(StageSpace(**values))
        return cls(tuple(stages))

    @classmethod
    def singleton(cls, arch: Arch) -> "SearchSpace":
        """The space holding exactly ``arch``: a standalone network is the network of this space."""
        return cls(tuple(StageSpace((s.mixer,), (s.kernel,), (s.depth,), (s.pool,), (s.pool_op,))
                         for s in arch.stages))

    def to_dict(self) -> dict[str, Any]:
        stages = []
        for s in self.stages:
            stage = {plural: list(s.choices(f)) for f, plural in FIELDS}
            if s.offers_pool_ops:
                stage["pool_ops"] = list(s.pool_ops)
            stages.append(stage)
        return {"stages": stages}

    @property
    def has_pool_ops(self) -> bool:
        """Whether any stage offers a pool op other than patch merging (a choice the search makes)."""
        return any(s.offers_pool_ops for s in self.stages)

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
            if (choice.pool, choice.pool_op) not in stage.entries():
                allowed = [op for p, op in stage.entries() if p == choice.pool]
                raise SpaceError(f"{source}: stage {i}: field 'pool_op': {choice.pool_op!r} with pool {choice.pool} "
                                 f"is not one of {allowed}")
        return arch

    def sample(self, rng: random.Random) -> Arch:
        """A random arch, each field drawn uniformly (the pool op only at pool 2, after the ratio); all
        randomness comes from ``rng``."""
        stages = []
        for s in self.stages:
            mixer, kernel, depth, pool = rng.choice(s.mixers), rng.choice(s.kernels), rng.choice(s.depths), rng.choice(s.pools)
            pool_op = DEFAULT_POOL_OP
            if pool == 2:  # only a stage with a pool-op choice draws one: default-space draws stay what they were
                pool_op = rng.choice(s.pool_ops) if len(s.pool_ops) > 1 else s.pool_ops[0]
            stages.append(StageChoice(mixer, kernel, depth, pool, pool_op))
        return Arch(tuple(stages))

    def __iter__(self) -> Iterator[Arch]:
        for combo in itertools.product(*(list(s) for s in self.stages)):
            yield Arch(tuple(combo))

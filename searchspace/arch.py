"""An architecture: one choice (mixer, kernel, depth, pool) per stage, and its JSON file format.

The arch file is user-facing and stable::

    {"stages": [{"mixer": "window_attention", "kernel": 7, "depth": 2, "pool": 1}, ...]}

A stage with pool 2 may also say ``"pool_op": "maxpool"`` (HVT's max pooling, then the width change)
instead of the default ``"merge"`` (Swin's patch merging); a stage without the field means "merge", and
``to_dict`` writes it only when it is not "merge", so every older file keeps its meaning and its bytes.
Other top-level keys (a name, metrics) are kept as ``extra`` and ignored by the builder.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from .cost import MIXERS  # the mixer registry (mixers.py) as cost.py fills it, beside the cost rules
from .errors import SpaceError

STAGE_FIELDS: dict[str, type] = {"mixer": str, "kernel": int, "depth": int, "pool": int}
OPTIONAL_STAGE_FIELDS: dict[str, type] = {"pool_op": str}
POOL_OPS = ("merge", "maxpool")  # how a pool-2 stage entry halves the map: patch merging or max pooling
DEFAULT_POOL_OP = "merge"


def entry_name(pool: int, pool_op: str = DEFAULT_POOL_OP) -> str:
    """A stage entry's name: ``pool1``, ``pool2`` (patch merging) or ``pool2_maxpool``."""
    return f"pool{pool}" if pool_op == DEFAULT_POOL_OP else f"pool{pool}_{pool_op}"


@dataclass(frozen=True)
class StageChoice:
    mixer: str
    kernel: int
    depth: int
    pool: int
    pool_op: str = DEFAULT_POOL_OP

    @property
    def entry(self) -> str:
        return entry_name(self.pool, self.pool_op)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.pool_op == DEFAULT_POOL_OP:
            del data["pool_op"]
        return data


MIXER_SHORT = {name: spec.short for name, spec in MIXERS.items()}  # the old name of the short keys: a view
POOL_OP_SHORT = {"merge": "", "maxpool": "mp"}


@dataclass(frozen=True)
class Arch:
    stages: tuple[StageChoice, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"stages": [s.to_dict() for s in self.stages]}

    def key(self) -> str:
        """A short readable id, e.g. ``wa7x2p1-dw5x2p2-dd3x6p2-wa7x2p2``."""
        return "-".join(f"{MIXER_SHORT.get(s.mixer, s.mixer)}{s.kernel}x{s.depth}p{s.pool}"
                        f"{POOL_OP_SHORT.get(s.pool_op, s.pool_op)}" for s in self.stages)

    @classmethod
    def from_dict(cls, data: Any, source: str = "arch") -> "Arch":
        """Parse the arch format; types are checked here, choices against a space by ``SearchSpace.validate``."""
        if not isinstance(data, dict) or "stages" not in data:
            raise SpaceError(f"{source}: expected a JSON object with a 'stages' list")
        stages = data["stages"]
        if not isinstance(stages, list):
            raise SpaceError(f"{source}: 'stages' must be a list, got {type(stages).__name__}")
        parsed = []
        for i, stage in enumerate(stages, start=1):
            if not isinstance(stage, dict):
                raise SpaceError(f"{source}: stage {i}: expected an object with fields {list(STAGE_FIELDS)}")
            known = {**STAGE_FIELDS, **OPTIONAL_STAGE_FIELDS}
            unknown = sorted(set(stage) - set(known))
            if unknown:
                raise SpaceError(f"{source}: stage {i}: unknown field '{unknown[0]}' (fields: {', '.join(known)})")
            values = {}
            for field, kind in known.items():
                if field not in stage:
                    if field in OPTIONAL_STAGE_FIELDS:
                        continue
                    raise SpaceError(f"{source}: stage {i}: missing field '{field}'")
                value = stage[field]
                # bool is an int subclass in Python; a JSON true is never a valid kernel or depth.
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise SpaceError(
                        f"{source}: stage {i}: field '{field}' must be {kind.__name__}, got {json.dumps(value)}")
                values[field] = value
            pool_op = values.get("pool_op", DEFAULT_POOL_OP)
            if pool_op not in POOL_OPS:
                raise SpaceError(f"{source}: stage {i}: field 'pool_op': {pool_op!r} is not one of {list(POOL_OPS)}")
            if pool_op != DEFAULT_POOL_OP and values["pool"] == 1:
                raise SpaceError(f"{source}: stage {i}: pool_op {pool_op!r} needs pool 2 (pool 1 keeps every token)")
            parsed.append(StageChoice(**values))
        return cls(tuple(parsed))


def read_json_file(path: str | os.PathLike) -> Any:
    """A user's JSON file, or a SpaceError naming the file and what is wrong with it."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpaceError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpaceError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SpaceError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def load_arch_file(path: str | os.PathLike) -> tuple[Arch, dict[str, Any]]:
    """Read an arch file; returns the arch and the other top-level keys. Raises SpaceError."""
    data = read_json_file(path)
    arch = Arch.from_dict(data, source=str(path))
    extra = {k: v for k, v in data.items() if k != "stages"}
    return arch, extra


# The seed papers' networks as points of the space: the tiny (-T) macro network, depths 2-2-6-2, the map halved
# before stages 2-4. Swin-T is window attention 7, DWNet-T a static depth-wise conv 7, dynamic DWNet-T a dynamic one.
PUBLISHED_DEPTHS_POOLS = ((2, 1), (2, 2), (6, 2), (2, 2))
PUBLISHED_MODELS = {"Swin-T": "window_attention", "DWNet-T": "dwconv", "dynamic DWNet-T": "dynamic_dwconv"}


def published_arch(mixer: str, kernel: int = 7, pool_op: str = DEFAULT_POOL_OP) -> Arch:
    """The -T macro network with ``mixer`` at ``kernel`` in every stage (``PUBLISHED_MODELS`` names the seeds')."""
    return Arch(tuple(StageChoice(mixer, kernel, depth, pool, pool_op if pool == 2 else DEFAULT_POOL_OP)
                      for depth, pool in PUBLISHED_DEPTHS_POOLS))


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temp path beside ``path`` to write to; renamed onto ``path`` when the block succeeds, removed
    when it fails. Readers never see half a file, and a crash leaves the previous one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def save_arch_file(path: str | os.PathLike, arch: Arch, **extra: Any) -> None:
    write_json_atomic(path, {**arch.to_dict(), **extra})

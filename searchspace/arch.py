"""An architecture: one choice (mixer, kernel, depth, pool) per stage, and its JSON file format.

The arch file is user-facing and stable::

    {"stages": [{"mixer": "window_attention", "kernel": 7, "depth": 2, "pool": 1}, ...]}

Other top-level keys (a name, metrics) are kept as ``extra`` and ignored by the builder.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import SpaceError

STAGE_FIELDS: dict[str, type] = {"mixer": str, "kernel": int, "depth": int, "pool": int}


@dataclass(frozen=True)
class StageChoice:
    mixer: str
    kernel: int
    depth: int
    pool: int


@dataclass(frozen=True)
class Arch:
    stages: tuple[StageChoice, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"stages": [asdict(s) for s in self.stages]}

    def key(self) -> str:
        """A short readable id, e.g. ``wa7x2p1-dw5x2p2-dd3x6p2-wa7x2p2``."""
        short = {"window_attention": "wa", "dwconv": "dw", "dynamic_dwconv": "dd"}
        return "-".join(f"{short.get(s.mixer, s.mixer)}{s.kernel}x{s.depth}p{s.pool}" for s in self.stages)

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
            unknown = sorted(set(stage) - set(STAGE_FIELDS))
            if unknown:
                raise SpaceError(f"{source}: stage {i}: unknown field '{unknown[0]}' (fields: {', '.join(STAGE_FIELDS)})")
            values = {}
            for field, kind in STAGE_FIELDS.items():
                if field not in stage:
                    raise SpaceError(f"{source}: stage {i}: missing field '{field}'")
                value = stage[field]
                # bool is an int subclass in Python; a JSON true is never a valid kernel or depth.
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise SpaceError(
                        f"{source}: stage {i}: field '{field}' must be {kind.__name__}, got {json.dumps(value)}")
                values[field] = value
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

"""Budgets: the strings (``4.5GFLOPs``, ``4.5G``, ``4500MFLOPs``, ``4.5e9``; latencies ``25ms``, ``0.025s``;
parameters ``28M``, ``28e6``) and ``Budget``, the one object that says whether a cost is over budget."""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from .arch import Arch
from .cost import ZERO, Cost, arch_cost
from .errors import SpaceError
from .extremes import extreme_archs, fewest_params
from .settings import DEPLOYMENT, NetSettings
from .space import SearchSpace

_NUMBER = r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*"
_FLOPS = re.compile(_NUMBER + r"([kKMGT]?)\s*(?:FLOPs?|flops?)?\s*$")
_PARAMS = re.compile(_NUMBER + r"([kKMGT]?)\s*(?:params?|parameters?)?\s*$")
_SCALE = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_LATENCY = re.compile(_NUMBER + r"(us|ms|s)\s*$")
_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _parse(pattern: re.Pattern, units: dict[str, float], text: str, error: str) -> float:
    """The positive finite number ``text`` states in one of ``units``, or a SpaceError saying ``error``."""
    m = pattern.match(str(text))
    value = float(m.group(1)) * units[m.group(2)] if m else math.nan
    if not m or not math.isfinite(value) or value <= 0:
        raise SpaceError(error)
    return value


def parse_flops(text: str) -> float:
    """FLOPs as a plain count. Raises SpaceError with the accepted forms on anything else."""
    return _parse(_FLOPS, _SCALE, text,
                  f"budget {text!r}: expected a positive FLOP count such as 4.5GFLOPs, 4.5G, 4500MFLOPs or 4.5e9")


def parse_params(text: str) -> float:
    """Parameters as a plain count from ``28M``, ``28e6`` or ``28000k``. Raises SpaceError otherwise."""
    return _parse(_PARAMS, _SCALE, text,
                  f"parameter budget {text!r}: expected a positive parameter count such as 28M, 28e6 or 28000k")


def parse_latency(text: str) -> float:
    """Latency in seconds from ``25ms``, ``0.025s`` or ``25000us``. Raises SpaceError otherwise."""
    return _parse(_LATENCY, _SECONDS, text,
                  f"latency budget {text!r}: expected a positive time with a unit, such as 25ms, 0.025s or 25000us")


def format_flops(flops: float) -> str:
    return f"{flops / 1e9:.2f}G" if flops >= 1e8 else f"{flops / 1e6:.2f}M"


def format_params(params: float) -> str:
    return f"{params / 1e6:.2f}M"


@dataclass(frozen=True)
class Budget:
    """Hard limits on an arch; a limit left None does not apply. FLOPs and parameters are the arch's at the
    deployment setting (``searchspace.DEPLOYMENT``), batch 1; the latency is in seconds, as a table or a
    measurement gives it."""

    flops: float | None = None
    params: float | None = None
    latency_s: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and (not isinstance(value, numbers.Real) or isinstance(value, bool) or not value > 0):
                raise SpaceError(f"budget {f.name}: expected a positive number, got {value!r}")

    @classmethod
    def parse(cls, flops: str | None = None, latency: str | None = None, params: str | None = None) -> "Budget":
        """The budget the strings state (``4.5GFLOPs``, ``25ms``, ``28M``); a SpaceError names a bad one."""
        return cls(flops=None if flops is None else parse_flops(flops),
                   params=None if params is None else parse_params(params),
                   latency_s=None if latency is None else parse_latency(latency))

    def violations(self, cost: Cost, latency_s: float | None = None) -> dict[str, float]:
        """How far over each limit that applies ``cost`` (and ``latency_s``, when known) is, as a fraction of the
        limit: <= 0 is within. The keys are the constraint names a search tells Optuna: ``flops_over_budget``,
        ``params_over_budget``, ``latency_over_budget``."""
        out = {}
        if self.flops is not None:
            out["flops_over_budget"] = cost.flops / self.flops - 1.0
        if self.params is not None:
            out["params_over_budget"] = cost.params / self.params - 1.0
        if self.latency_s is not None and latency_s is not None:
            out["latency_over_budget"] = latency_s / self.latency_s - 1.0
        return out

    def admits(self, cost: Cost, latency_s: float | None = None) -> bool:
        """Whether ``cost`` (and ``latency_s``, when known) is within every limit that applies: every violation
        <= 0, decided on the values themselves so that no rounding of the fractions moves an arch at the edge."""
        return ((self.flops is None or cost.flops <= self.flops)
                and (self.params is None or cost.params <= self.params)
                and (self.latency_s is None or latency_s is None or latency_s <= self.latency_s))

    def admits_arch(self, arch: Arch, settings: NetSettings = DEPLOYMENT, latency_s: float | None = None) -> bool:
        """``admits`` for the cost of ``arch`` at ``settings`` (computed only when a FLOPs or parameter limit
        applies)."""
        limits_cost = self.flops is not None or self.params is not None
        return self.admits(arch_cost(arch, settings) if limits_cost else ZERO, latency_s)

    def check_covers_cheapest(self, space: SearchSpace, what: str, settings: NetSettings = DEPLOYMENT) -> None:
        """SpaceError when no arch of ``space`` meets the FLOPs limit, or the parameter limit, at ``settings``;
        ``what`` names the budget in the message.

        One rule for every budget that selects archs: the search's, a supernet's path budget, check-ranking's
        band."""
        if self.flops is not None:
            cheapest = arch_cost(extreme_archs(space, settings)[0], settings).flops
            if cheapest > self.flops:
                hint = ""
                if self.flops < 1e3:  # a unit left out (`--budget 4.5`), not a price anyone means
                    hint = f": a number without a unit counts FLOPs, did you mean {self.flops:g}GFLOPs?"
                raise SpaceError(f"{what} is below the cheapest arch of the space ({format_flops(cheapest)} FLOPs)"
                                 f"{hint}")
        if self.params is not None:
            fewest = fewest_params(space, settings)
            if fewest > self.params:
                raise SpaceError(f"{what} is below the smallest arch of the space ({format_params(fewest)} "
                                 f"parameters)")

    def describe(self) -> str:
        """The limits in words, e.g. ``4.50G FLOPs, 25.0 ms``."""
        parts = []
        if self.flops is not None:
            parts.append(f"{format_flops(self.flops)} FLOPs")
        if self.params is not None:
            parts.append(f"{format_params(self.params)} params")
        if self.latency_s is not None:
            parts.append(f"{self.latency_s * 1e3:.1f} ms")
        return ", ".join(parts) or "no limit"

    def to_dict(self) -> dict[str, float]:
        """The limits that apply, by field name (``flops``, ``params``, ``latency_s``)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Any, source: str = "budget") -> "Budget":
        names = [f.name for f in fields(cls)]
        if not isinstance(data, dict):
            raise SpaceError(f"{source}: expected an object with some of the fields {names}")
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise SpaceError(f"{source}: unknown field '{unknown[0]}' (fields: {', '.join(names)})")
        try:
            return cls(**data)
        except SpaceError as e:
            raise SpaceError(f"{source}: {e}") from None


def check_budget_covers_cheapest(space: SearchSpace, s: NetSettings, budget_flops: float, what: str) -> None:
    """``Budget(flops=budget_flops).check_covers_cheapest(space, what, s)``: the old name, kept."""
    Budget(flops=budget_flops).check_covers_cheapest(space, what, s)

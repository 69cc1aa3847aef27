"""Budget strings: ``4.5GFLOPs``, ``4.5G``, ``4500MFLOPs``, ``4.5e9``; latencies ``25ms``, ``0.025s``."""
from __future__ import annotations

import math
import re

from .errors import SpaceError

_FLOPS = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKMGT]?)\s*(?:FLOPs?|flops?)?\s*$")
_SCALE = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_LATENCY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(us|ms|s)\s*$")
_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def parse_flops(text: str) -> float:
    """FLOPs as a plain count. Raises SpaceError with the accepted forms on anything else."""
    m = _FLOPS.match(str(text))
    value = float(m.group(1)) * _SCALE[m.group(2)] if m else math.nan
    if not m or not math.isfinite(value) or value <= 0:
        raise SpaceError(f"budget {text!r}: expected a positive FLOP count such as 4.5GFLOPs, 4.5G, 4500MFLOPs or 4.5e9")
    return value


def parse_latency(text: str) -> float:
    """Latency in seconds from ``25ms``, ``0.025s`` or ``25000us``. Raises SpaceError otherwise."""
    m = _LATENCY.match(str(text))
    value = float(m.group(1)) * _SECONDS[m.group(2)] if m else math.nan
    if not m or not math.isfinite(value) or value <= 0:
        raise SpaceError(f"latency budget {text!r}: expected a positive time with a unit, such as 25ms, 0.025s or 25000us")
    return value


def format_flops(flops: float) -> str:
    return f"{flops / 1e9:.2f}G" if flops >= 1e8 else f"{flops / 1e6:.2f}M"


def format_params(params: float) -> str:
    return f"{params / 1e6:.2f}M"

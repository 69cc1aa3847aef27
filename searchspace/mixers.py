"""The mixers of the search space: one registry, ``MIXERS`` (name -> ``MixerSpec``), that every table of mixer
names is a view of.

A spec is all the search space knows of a mixer: its name (in space and arch files), its short key (in arch keys
such as ``wa7x2p1``), its cost rule, whether it holds a depth-wise conv (which pads k // 2 on each side, so keeps
the resolution for odd kernels only) and whether its forward depends on Swin's shift flag (every second block).
The specs are registered in ``cost.py``, in one table beside the cost rules they name; ``supernet/mixers.py``
holds each mixer's module and refuses to import unless it implements exactly the registered mixers.

A new mixer: its cost rule and its spec in ``cost.py``, its module in ``supernet/mixers.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .errors import SpaceError
from .settings import NetSettings

if TYPE_CHECKING:
    from .cost import Cost

# (dim, kernel, resolution, settings) -> the cost of one block's mixer with its FFN's norm (not the MLP).
CostRule = Callable[[int, int, int, NetSettings], "Cost"]


@dataclass(frozen=True)
class MixerSpec:
    name: str
    short: str        # in Arch.key(): unique among the mixers
    cost: CostRule
    conv: bool        # a depth-wise conv: a space may offer it odd kernels only
    shiftable: bool   # forward depends on the shift flag (Swin's shifted windows)


MIXERS: dict[str, MixerSpec] = {}  # filled by cost.py, in the order of its table


def register(*specs: MixerSpec) -> None:
    """Add ``specs`` to ``MIXERS``, in order; none is added if one's name or short key is already taken."""
    taken = {k for s in MIXERS.values() for k in (("name", s.name), ("short", s.short))}
    for spec in specs:
        for key in (("name", spec.name), ("short", spec.short)):
            if key in taken:
                raise ValueError(f"mixer {spec.name!r}: {key[0]} {key[1]!r} is taken by another mixer")
            taken.add(key)
    MIXERS.update((spec.name, spec) for spec in specs)


def mixer_spec(name: str) -> MixerSpec:
    """The spec of mixer ``name``, or a SpaceError naming the registered mixers."""
    if name not in MIXERS:
        raise SpaceError(f"unknown mixer {name!r} (known: {', '.join(MIXERS)})")
    return MIXERS[name]

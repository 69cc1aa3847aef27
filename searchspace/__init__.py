"""Choices and costs of the mixer search space. No tensors, no training."""
from .arch import Arch, StageChoice, atomic_path, load_arch_file, save_arch_file, write_json_atomic
from .budget import format_flops, format_params, parse_flops, parse_latency
from .cost import (Cost, arch_cost, check_budget_covers_cheapest, dearest_arch_within, extreme_archs,
                   stage_resolutions)
from .errors import SpaceError
from .settings import DEPLOYMENT, SMALL, NetSettings
from .space import KNOWN_MIXERS, SearchSpace, StageSpace

__all__ = [
    "Arch", "StageChoice", "atomic_path", "load_arch_file", "save_arch_file", "write_json_atomic",
    "format_flops", "format_params", "parse_flops", "parse_latency",
    "Cost", "arch_cost", "check_budget_covers_cheapest", "dearest_arch_within", "extreme_archs", "stage_resolutions",
    "SpaceError",
    "DEPLOYMENT", "SMALL", "NetSettings", "KNOWN_MIXERS", "SearchSpace", "StageSpace",
]

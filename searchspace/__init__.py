"""Choices and costs of the mixer search space. No tensors, no training."""
from .arch import (PUBLISHED_MODELS, Arch, StageChoice, atomic_path, load_arch_file, published_arch, save_arch_file,
                   write_json_atomic)
from .budget import (Budget, check_budget_covers_cheapest, format_flops, format_params, parse_flops, parse_latency,
                     parse_params)
from .cost import Cost, arch_cost, stage_resolutions
from .errors import SpaceError
from .extremes import dearest_arch_within, extreme_archs
from .mixers import MIXERS as MIXER_SPECS
from .mixers import MixerSpec, mixer_spec
from .settings import DEPLOYMENT, SMALL, NetSettings
from .space import KNOWN_MIXERS, SearchSpace, StageSpace

__all__ = [
    "PUBLISHED_MODELS", "Arch", "StageChoice", "atomic_path", "published_arch", "load_arch_file", "save_arch_file", "write_json_atomic",
    "Budget", "check_budget_covers_cheapest", "format_flops", "format_params", "parse_flops", "parse_latency",
    "parse_params",
    "Cost", "arch_cost", "stage_resolutions", "SpaceError", "dearest_arch_within", "extreme_archs",
    "MIXER_SPECS", "MixerSpec", "mixer_spec",
    "DEPLOYMENT", "SMALL", "NetSettings", "KNOWN_MIXERS", "SearchSpace", "StageSpace",
]

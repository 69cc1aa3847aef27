"""Weight-sharing modules: elastic mixers, the mixer network (supernet and standalone), path
samplers. Knows modules only: never imports Ray or Optuna."""
from .mixers import MIXERS, BatchNormNHWC, DWConvMixer, DynamicDWConvMixer, WindowAttentionMixer
from .network import MixerBlock, MixerNet, MixerStage, num_params
from .profile import fvcore_flops
from . import timm_entry  # registers timm.create_model("mixernet", arch=...)
from .sampler import SAMPLERS, PathSampler, make_path_sampler

__all__ = ["MIXERS", "BatchNormNHWC", "DWConvMixer", "DynamicDWConvMixer", "WindowAttentionMixer",
           "MixerBlock", "MixerNet", "MixerStage", "num_params", "fvcore_flops",
           "SAMPLERS", "PathSampler", "make_path_sampler", "timm_entry"]

"""``timm.create_model("mixernet", arch=...)``: any arch of the space as a timm model.

``arch`` is an Arch, an arch dict, or an arch JSON file; the other keyword arguments are
NetSettings fields (num_classes, in_chans, img_size, embed_dim, patch_size, ...). Weights of a
retrained run load with timm's own ``checkpoint_path=".../retrain/model.pt"``.
"""
from __future__ import annotations

from pathlib import Path

from timm.models import register_model

from searchspace import DEPLOYMENT, Arch, load_arch_file

from .network import MixerNet


@register_model
def mixernet(pretrained: bool = False, arch: Arch | dict | str | Path | None = None, **settings) -> MixerNet:
    if pretrained:
        raise ValueError("mixernet has no hosted weights: pass checkpoint_path= a retrained model.pt")
    if arch is None:
        raise ValueError("mixernet needs arch= (an Arch, an arch dict, or an arch JSON file)")
    if isinstance(arch, (str, Path)):
        arch, _ = load_arch_file(arch)
    elif isinstance(arch, dict):
        arch = Arch.from_dict(arch)
    for timm_own in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):  # timm's, not ours; typos still raise
        settings.pop(timm_own, None)
    return MixerNet.from_arch(arch, DEPLOYMENT.replace(**settings))

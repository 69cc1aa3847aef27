"""Load a retrained model with one call: ``load_model("results/<run>/retrain")`` -> a plain nn.Module."""
from __future__ import annotations

from pathlib import Path

import torch

from nas.errors import UserError
from nas.runs import checkpoint as ckpt
from nas.runs.layout import MODEL, model_file
from searchspace import Arch, NetSettings
from supernet import MixerNet

__all__ = ["MODEL", "load_model", "model_file"]


def load_model(path: str | Path, device: str | torch.device = "cpu") -> MixerNet:
    """The retrained network in eval mode, from its retrain folder (or its model.pt)."""
    state = ckpt.load(model_file(path), map_location=device)
    if "arch" not in state or "settings" not in state:
        raise UserError(f"{path}: not a retrained model file")
    net = MixerNet.from_arch(Arch.from_dict(state["arch"]), NetSettings.from_dict(state["settings"]))
    net.load_state_dict(state["model"])
    return net.to(device).eval()

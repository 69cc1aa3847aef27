"""Load a retrained model with one call: ``load_model("results/<run>/retrain")`` -> a plain nn.Module."""
from __future__ import annotations

from pathlib import Path

import torch

from nas import checkpoint as ckpt
from nas.errors import UserError
from searchspace import Arch, NetSettings
from supernet import MixerNet

MODEL = "model.pt"


def model_file(path: str | Path) -> Path:
    path = Path(path)
    file = path / MODEL if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"{path}: no retrained model here (expected {MODEL} from launch.py retrain)")
    return file


def load_model(path: str | Path, device: str | torch.device = "cpu") -> MixerNet:
    """The retrained network in eval mode, from its retrain folder (or its model.pt)."""
    state = ckpt.load(model_file(path), map_location=device)
    if "arch" not in state or "settings" not in state:
        raise UserError(f"{path}: not a retrained model file")
    net = MixerNet.from_arch(Arch.from_dict(state["arch"]), NetSettings.from_dict(state["settings"]))
    net.load_state_dict(state["model"])
    return net.to(device).eval()

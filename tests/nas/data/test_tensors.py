"""Batched on-device augmentation (issue #10 item 1): timm's crop rule, torchvision's resize, seeded batches."""
from __future__ import annotations

import math
import pickle

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from nas.data.datasets import build_data
from nas.data.loaders import make_loader
from nas.data.tensors import CropFlip, DeviceBatchLoader, InMemoryImages, crop_boxes, resized_crop
from nas.settings import DataConfig


def _timm_box(height, width, scale, ratio, area_u, aspect_u, pos_u):
    """timm's RandomResizedCropAndInterpolation.get_params, written out with given uniforms in [0, 1)."""
    area = height * width
    for a, r in zip(area_u, aspect_u):
        target_area = (scale[0] + (scale[1] - scale[0]) * a) * area
        log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
        aspect = math.exp(log_lo + (log_hi - log_lo) * r)
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if w <= width and h <= height:
            return int(pos_u[0] * (height - h + 1)), int(pos_u[1] * (width - w + 1)), h, w
    return None


@pytest.mark.parametrize("aug,size", [(CropFlip((0.7, 1.0), (0.9, 1 / 0.9)), 32),
                                      (CropFlip((0.08, 1.0), (3 / 4, 4 / 3)), 20),
                                      (CropFlip((0.6, 1.0), (3 / 4, 4 / 3)), 17)])
def test_crop_boxes_follow_timms_rule(aug, size):
    gen = torch.Generator().manual_seed(3)
    boxes = crop_boxes(500, size, size, aug, gen)
    # the same uniforms, replayed through timm's scalar rule
    replay = torch.Generator().manual_seed(3)
    area_u = torch.rand(500, 10, generator=replay, dtype=torch.float64)
    aspect_u = torch.rand(500, 10, generator=replay, dtype=torch.float64)
    pos_u = torch.rand(500, 2, generator=replay, dtype=torch.float64)
    for k in range(500):
        expect = _timm_box(size, size, aug.scale, aug.ratio, area_u[k].tolist(), aspect_u[k].tolist(),
                           pos_u[k].tolist())
        assert expect is not None  # these settings always fit within 10 tries in practice
        assert tuple(boxes[k].tolist()) == expect
    top, left, h, w = boxes.unbind(1)
    assert bool(((top >= 0) & (left >= 0) & (top + h <= size) & (left + w <= size)).all())


def test_crop_boxes_fallback_is_the_centred_image():
    # areas above the image never fit: every box falls back to the whole image cut to the allowed aspect range
    boxes = crop_boxes(8, 30, 40, CropFlip((1.5, 2.0), (0.5, 1.2)), torch.Generator().manual_seed(0))
    assert boxes.tolist() == [[0, 2, 30, 36]] * 8  # 40/30 > 1.2: width round(30 * 1.2) = 36, centred
    boxes = crop_boxes(4, 16, 16, CropFlip((1.5, 2.0), (0.75, 1.33)), torch.Generator().manual_seed(0))
    assert boxes.tolist() == [[0, 0, 16, 16]] * 4


def test_resized_crop_matches_torchvision_per_image_and_flips():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 24, 24, generator=gen)
    boxes = crop_boxes(6, 24, 24, CropFlip((0.3, 1.0), (3 / 4, 4 / 3)), gen)
    flip = torch.tensor([False, True, False, True, True, False])
    out = resized_crop(images, boxes, 24, flip)
    for k in range(6):
        i, j, h, w = boxes[k].tolist()
        expect = TF.resized_crop(images[k], i, j, h, w, [24, 24], antialias=False)  # bilinear
        if flip[k]:
            expect = TF.horizontal_flip(expect)
        torch.testing.assert_close(out[k], expect, atol=1e-5, rtol=1e-5)
    whole = torch.tensor([[0, 0, 24, 24]] * 6)
    torch.testing.assert_close(resized_crop(images, whole, 24), images, atol=1e-6, rtol=0)  # identity


def _digits(augment=True, n=64):
    train = build_data(DataConfig(augment=augment)).train
    return train.subset(range(n))


def test_device_loader_seeded_epochs_and_coverage():
    data = _digits()
    first = DeviceBatchLoader(data, 16, shuffle=True, seed=4, drop_last=True)
    epoch1 = [(x.clone(), y.clone()) for x, y in first]
    epoch2 = [(x.clone(), y.clone()) for x, y in first]
    again = [(x, y) for x, y in DeviceBatchLoader(data, 16, shuffle=True, seed=4, drop_last=True)]
    assert len(epoch1) == len(first) == 4
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(epoch1, again))
    assert not torch.equal(epoch1[0][0], epoch2[0][0])  # the next epoch: new order and crops
    assert sorted(torch.cat([y for _, y in epoch1]).tolist()) == sorted(data.labels.tolist())  # each image once
    x, _ = epoch1[0]
    assert x.shape == (16, 1, 32, 32) and x.dtype == torch.float32


def test_device_loader_plain_order_partial_batch_and_sampler():
    data = _digits(augment=False, n=10)
    loader = DeviceBatchLoader(data, 4, shuffle=False, seed=0)
    xs, ys = zip(*loader)
    assert [len(y) for y in ys] == [4, 4, 2] and len(loader) == 3
    assert torch.equal(torch.cat(ys), data.labels)
    # un-augmented batches hold exactly what indexing one sample gives
    assert torch.equal(xs[1][2], data[6][0])
    assert len(DeviceBatchLoader(data, 4, shuffle=False, seed=0, drop_last=True)) == 2
    sampler = [7, 3, 3]
    got = torch.cat([y for _, y in DeviceBatchLoader(data, 2, shuffle=True, seed=0, sampler=sampler)])
    assert got.tolist() == data.labels[[7, 3, 3]].tolist()


def test_make_loader_serves_in_memory_data_as_batches():
    bundle = build_data(DataConfig())
    assert isinstance(bundle.train, InMemoryImages) and bundle.train.augment == CropFlip((0.7, 1.0), (0.9, 1 / 0.9))
    assert bundle.val.augment is None and bundle.test.augment is None
    assert isinstance(make_loader(bundle.train, 32, shuffle=True, seed=0), DeviceBatchLoader)
    sub = torch.utils.data.Subset(bundle.val, [5, 1, 2])
    ys = torch.cat([y for _, y in make_loader(sub, 2, shuffle=False, seed=0)])
    assert ys.tolist() == bundle.val.labels[[5, 1, 2]].tolist()


def test_pickled_dataset_leaves_device_copies_behind():
    data = _digits(n=8)
    data.on("cpu")
    clone = pickle.loads(pickle.dumps(data))
    assert clone._on_device == {} and torch.equal(clone.images, data.images)


def test_bad_images_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        InMemoryImages(torch.zeros(2, 1, 8, 8), torch.zeros(2), (0.0,), (1.0,))
    with pytest.raises(ValueError, match="square"):
        InMemoryImages(torch.zeros(2, 1, 8, 6, dtype=torch.uint8), torch.zeros(2), (0.0,), (1.0,))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: batches built on the GPU")
def test_cuda_batches_equal_cpu_batches():
    data = _digits()
    cpu = [x for x, _ in DeviceBatchLoader(data, 16, shuffle=True, seed=1)]
    gpu = [x for x, _ in DeviceBatchLoader(data, 16, shuffle=True, seed=1, device="cuda")]
    assert gpu[0].device.type == "cuda"
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(a, b.cpu(), atol=1e-4, rtol=1e-4)


def test_batched_augmentation_matches_timms_per_image_transform_in_distribution():
    # The digits' training augmentation before issue #10 was timm's PIL transform, image by image; the batched
    # one must produce the same distribution: pixel mean/std and the mean image of an epoch agree.
    from PIL import Image
    from timm.data import create_transform
    train = build_data(DataConfig()).train
    aug = train.augment
    timm_tf = create_transform(32, is_training=True, scale=aug.scale, ratio=aug.ratio, hflip=aug.hflip,
                               color_jitter=None, interpolation="bilinear", mean=train.mean, std=train.std)
    torch.manual_seed(0)
    per_image = torch.stack([timm_tf(Image.fromarray(train.images[i, 0].numpy())) for i in range(len(train))])
    batched = torch.cat([x for x, _ in make_loader(train, 500, shuffle=False, seed=0)])
    assert abs(per_image.mean() - batched.mean()) < 0.01 and abs(per_image.std() - batched.std()) < 0.01
    gap = (per_image.mean(0) - batched.mean(0)).abs()
    assert gap.mean() < 0.02 and gap.max() < 0.15
    # the check can tell: without augmentation the mean image is much further off
    plain = InMemoryImages(train.images, train.labels, train.mean, train.std)
    unaugmented = torch.cat([x for x, _ in make_loader(plain, 500, shuffle=False, seed=0)])
    assert (per_image.mean(0) - unaugmented.mean(0)).abs().max() > 2 * gap.max()

"""Regression: issue #9 -- the validation and test splits never reach a training or recalibration batch."""
import hashlib

import numpy as np
import torch

from nas.data.datasets import MNIST_MEAN, MNIST_STD, build_data
from nas.settings import DataConfig, TrainConfig
from nas.train.evaluate import evaluate_arch, recalibrate_bn
from nas.train.trainer import Trainer
from searchspace import SearchSpace
from supernet import MixerNet
from tests.helpers import TINY, TINY_SPACE


def digests(images: torch.Tensor) -> set[str]:
    """One digest per uint8 image."""
    return {hashlib.sha1(img.numpy().tobytes()).hexdigest() for img in images}


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Undo the loader's normalisation: the uint8 pixels the batch was made of."""
    return (x * MNIST_STD[0] + MNIST_MEAN[0]).mul(255).round().clamp(0, 255).to(torch.uint8)[:, 0]


class Recorder:
    """A forward pre-hook that keeps every input batch a network sees."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.batches: list[torch.Tensor] = []
        self.handle = net.register_forward_pre_hook(lambda _, args: self.batches.append(args[0].detach().clone()))

    def seen(self) -> set[str]:
        return digests(torch.cat([to_uint8(b) for b in self.batches]))


def test_no_validation_or_test_image_reaches_training_or_recalibration(tmp_path):
    data = build_data(DataConfig(augment=False, train_subset=600))
    train_all = build_data(DataConfig(augment=False))
    held_out = digests(data.val.images[:, 0]) | digests(data.test.images[:, 0])
    assert len(held_out) == 2000  # the digests tell images apart
    train_digests = digests(train_all.train.images[:, 0])
    assert held_out.isdisjoint(train_digests)

    space = SearchSpace.from_dict(TINY_SPACE)
    supernet = MixerNet(space, TINY)
    trainer_rec = Recorder(supernet)
    from supernet import make_path_sampler
    trainer = Trainer(supernet, data, TrainConfig(epochs=1, batch_size=50, warmup_epochs=0, recalib_batches=2),
                      tmp_path, path_sampler=make_path_sampler("spos", space, 0), progress=False)
    trainer.train_epoch(0)
    trainer_rec.handle.remove()
    seen_in_training = trainer_rec.seen()
    assert len(seen_in_training) == 600 and seen_in_training <= train_digests

    arch = space.sample(__import__("random").Random(0))
    net = supernet.extract(arch)
    recal_rec = Recorder(net)
    recalibrate_bn(net, data.train, num_batches=100, batch_size=64)
    recal_rec.handle.remove()
    seen_in_recalibration = recal_rec.seen()
    assert seen_in_recalibration and seen_in_recalibration <= train_digests
    assert held_out.isdisjoint(seen_in_recalibration)

    # evaluate_arch: fine-tuning and recalibration batches from train, evaluation on validation only, never test
    inputs = []
    original = MixerNet.extract

    def extract_and_record(self, a):
        extracted = original(self, a)
        extracted.register_forward_pre_hook(lambda _, args: inputs.append(args[0].detach().clone()))
        return extracted

    MixerNet.extract = extract_and_record
    try:
        evaluate_arch(supernet, arch, data, recalib_batches=3, finetune_steps=5, recipe=TrainConfig(batch_size=50))
    finally:
        MixerNet.extract = original
    seen = digests(torch.cat([to_uint8(b) for b in inputs]))
    assert seen.isdisjoint(digests(data.test.images[:, 0]))
    val = digests(data.val.images[:, 0])
    assert val <= seen  # the whole validation split is evaluated
    assert len(seen - val) >= 5 * 50 and seen - val <= train_digests  # fine-tuned and recalibrated on train only
    recalibration = seen - digests(data.val.images[:, 0])
    assert recalibration and recalibration <= train_digests
    assert np.intersect1d(data.indices["val"], data.indices["test"]).size == 0

"""nas.train (trainer, evaluate, finetune): BatchNorm recalibration, fine-tuning and inherited-weight evaluation, mixed-precision training."""
import copy
import itertools
import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from nas.data.datasets import build_data
from nas.data.loaders import make_loader
from nas.errors import UserError
from nas.runs.migrate import migrate
from nas.settings import TrainConfig
from nas.train.evaluate import evaluate, evaluate_arch, recalibrate_bn
from nas.train.finetune import finetune
from nas.train.steps import hard_label_loss
from nas.train.trainer import Trainer
from searchspace import SearchSpace
from supernet import MixerNet
from tests.helpers import ARCH, RECIPE, TINY, TINY_DATA, TINY_SPACE, conv_bn


@pytest.mark.parametrize("images, batch_size", [(40, 8), (20, 128)])
def test_recalibrate_bn_sets_the_statistics_of_the_batches_seen(images, batch_size):
    # (20, 128): regression, issue #11 item 2 -- fewer images than a batch ran no batch at all
    x = torch.randn(images, 1, 8, 8) * 3 + 1
    net = conv_bn().eval()
    bn = net[2]
    bn.running_mean.fill_(5.0)
    recalibrate_bn(net, TensorDataset(x, torch.zeros(images, dtype=torch.long)), num_batches=100,
                   batch_size=batch_size)
    with torch.no_grad():
        features = net[0](x)  # every image is seen once (full batches cover the dataset here)
    torch.testing.assert_close(bn.running_mean, features.mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-5)
    assert not net.training and not bn.training and bn.momentum == 0.1  # modes and momentum restored


def test_recalibrate_bn_refuses_a_single_image():
    with pytest.raises(ValueError, match="at least 2"):
        recalibrate_bn(conv_bn(), TensorDataset(torch.randn(1, 1, 8, 8), torch.zeros(1)), num_batches=1)


@pytest.mark.slow
def test_evaluate_arch_recalibrates_on_train_and_scores_validation():
    data = build_data(TINY_DATA)
    torch.manual_seed(0)
    supernet = MixerNet(SearchSpace.from_dict(TINY_SPACE), TINY)
    got = evaluate_arch(supernet, ARCH, data, recalib_batches=2, seed=3)

    net = supernet.extract(ARCH)
    before = evaluate(net, data.val)
    recalibrate_bn(net, data.train, num_batches=2, seed=3)
    expected = evaluate(net, data.val)
    assert got == expected and got != before  # the same numbers, and recalibration changed them
    assert got != evaluate(net, data.test)  # validation, not test


# --- fine-tuning an extracted arch before it is evaluated (issue #9) -------------------------------

def state_of(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_finetune_trains_the_extracted_arch_alone_and_leaves_the_supernet_as_it_was():
    data = build_data(TINY_DATA)
    torch.manual_seed(0)
    supernet = MixerNet(SearchSpace.from_dict(TINY_SPACE), TINY)
    before = state_of(supernet)
    net = supernet.extract(ARCH)
    untrained = evaluate(net, data.val)
    mean_loss = finetune(net, data.train, RECIPE, steps=30, seed=0)
    trained = evaluate(net, data.val)
    # 30 steps on the plain digits from a random start: far better than chance (10%) on images it never saw
    assert trained["top1"] > untrained["top1"] + 0.2 and trained["loss"] < untrained["loss"]
    # the mean over the run includes its start near chance (ln 10 = 2.30), so it lies above where training ended
    assert trained["loss"] < mean_loss < 2.6
    after = supernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the copy trained, never the supernet


def test_finetune_follows_its_seed_and_restores_the_global_rng():
    data = build_data(TINY_DATA)
    torch.manual_seed(0)
    supernet = MixerNet(SearchSpace.from_dict(TINY_SPACE), TINY)
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        net = supernet.extract(ARCH)
        torch.manual_seed(123)
        finetune(net, data.train, RECIPE, steps=3, seed=seed)
        runs[name] = (state_of(net), torch.rand(3))
    assert all(torch.equal(runs["a"][0][k], runs["b"][0][k]) for k in runs["a"][0])
    assert not all(torch.equal(runs["a"][0][k], runs["c"][0][k]) for k in runs["a"][0])
    assert torch.equal(runs["a"][1], runs["c"][1])  # the caller's random stream is untouched


def test_finetune_returns_the_mean_training_loss_of_its_steps():
    data = build_data(TINY_DATA)
    torch.manual_seed(0)
    supernet = MixerNet(SearchSpace.from_dict(TINY_SPACE), TINY)
    frozen = copy.copy(RECIPE)
    frozen.lr = 0.0  # the weights never move, so each step's loss is known by hand (no flag may say 0)
    got = finetune(supernet.extract(ARCH), data.train, frozen, steps=4, seed=4)
    # by hand: the label-smoothed loss of the seed's first 4 batches on the inherited weights, averaged
    net = supernet.extract(ARCH).train()
    loss_fn = hard_label_loss(RECIPE.label_smoothing)
    with torch.random.fork_rng():
        torch.manual_seed(4)
        batches = make_loader(data.train, RECIPE.batch_size, shuffle=True, seed=4 * 100_003, drop_last=True)
        losses = [loss_fn(net(x), y).item() for x, y in itertools.islice(batches, 4)]
    assert len(losses) == 4 and max(losses) - min(losses) > 1e-3  # four different batches: mean != any one of them
    assert got == pytest.approx(sum(losses) / 4, rel=1e-5)


def test_finetune_refuses_no_steps():
    with pytest.raises(ValueError, match="at least 1 step"):
        finetune(conv_bn(), TensorDataset(torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)), RECIPE, steps=0)


def test_evaluate_arch_fine_tunes_then_recalibrates_then_scores_validation():
    data = build_data(TINY_DATA)
    torch.manual_seed(0)
    supernet = MixerNet(SearchSpace.from_dict(TINY_SPACE), TINY)
    got = evaluate_arch(supernet, ARCH, data, recalib_batches=2, seed=3, finetune_steps=4, recipe=RECIPE)

    net = supernet.extract(ARCH)
    train_loss = finetune(net, data.train, RECIPE, steps=4, seed=3)
    recalibrate_bn(net, data.train, num_batches=2, seed=3)
    assert got == {**evaluate(net, data.val), "train_loss": train_loss}
    as_is = evaluate_arch(supernet, ARCH, data, recalib_batches=2, seed=3)
    assert "train_loss" not in as_is and as_is != {k: got[k] for k in as_is}  # the steps changed the figure
    with pytest.raises(ValueError, match="recipe"):
        evaluate_arch(supernet, ARCH, data, recalib_batches=2, finetune_steps=4)


# --- mixed precision (issue #10, item 2) ----------------------------------------------------------

@pytest.mark.slow
def test_bf16_autocast_trains_on_cpu(tmp_path):
    """--amp bf16: the forward runs in bfloat16 (no gradient scaler), the weights stay float32 and learn."""
    data = build_data(TINY_DATA)
    torch.manual_seed(0)
    net = MixerNet.from_arch(ARCH, TINY)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainer = Trainer(net, data, TrainConfig(epochs=1, batch_size=100, amp="bf16", recalib_batches=1), tmp_path,
                      progress=False)
    assert trainer.scaler is None
    with trainer._autocast():
        assert net(data.train[0][0][None].repeat(2, 1, 1, 1)).dtype == torch.bfloat16
    history = trainer.fit()
    assert math.isfinite(history[0]["train_loss"]) and 0 <= history[0]["val_top1"] <= 1
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_amp_settings():
    # what --amp meant before bf16: old jobs keep their meaning
    assert TrainConfig.from_dict(migrate("train", {"amp": True})).amp == "fp16"
    assert TrainConfig.from_dict(migrate("train", {"amp": None})).amp is False
    assert TrainConfig().to_dict()["amp"] is False  # unchanged: saved supernets keep their fingerprint
    with pytest.raises(UserError, match="choose bf16 or fp16"):
        TrainConfig(amp="fp8")
    net = MixerNet.from_arch(ARCH, TINY)
    with pytest.raises(UserError, match="--amp fp16 needs a CUDA device"):
        Trainer(net, build_data(TINY_DATA), TrainConfig(amp="fp16"), "unused", progress=False)


def test_a_non_finite_loss_stops_training_before_anything_is_saved(tmp_path):
    # The loss is read on the host only every few steps (issue #10: no device wait at each step); a NaN must
    # still stop the run, and no checkpoint of the poisoned epoch may be written.
    data = build_data(TINY_DATA)
    torch.manual_seed(0)
    net = MixerNet.from_arch(ARCH, TINY)
    net.head.register_forward_hook(lambda module, args, out: out * float("nan"))
    trainer = Trainer(net, data, TrainConfig(epochs=1, batch_size=100), tmp_path, progress=False)
    with pytest.raises(FloatingPointError, match="loss is nan by epoch 1 step"):
        trainer.fit()
    assert not (tmp_path / "checkpoint.pt").exists()


def test_epoch_loss_is_the_mean_over_images_of_each_step(tmp_path):
    data = build_data(TINY_DATA)
    torch.manual_seed(0)
    net = MixerNet.from_arch(ARCH, TINY)
    cfg = TrainConfig(epochs=1, batch_size=50, min_lr=0.0, label_smoothing=0.0, clip_grad=None)
    cfg.lr = 0.0  # the weights never move (no flag may say 0)
    trainer = Trainer(net, data, cfg, tmp_path, progress=False)
    losses = []
    net.head.register_forward_hook(lambda module, args, out: losses.append(out.detach()) or out)
    labels = [y for _, y in trainer._loader(0)]
    got = trainer.train_epoch(0)["train_loss"]
    expected = torch.stack([torch.nn.functional.cross_entropy(o, y) for o, y in zip(losses, labels)]).mean()
    assert got == pytest.approx(expected.item(), rel=1e-5)


def test_the_local_device_is_cuda_only_where_torch_sees_it():
    from nas.errors import UserError
    from nas.train.steps import local_device

    assert local_device(False) == torch.device("cpu")
    if torch.cuda.is_available():
        assert local_device(True) == torch.device("cuda")
    else:
        with pytest.raises(UserError, match="^--gpu: torch sees no CUDA device"):
            local_device(True)


@pytest.mark.slow
@pytest.mark.parametrize("limit_s, expected_lines", [(0.0, 1), (1e9, 0)])
def test_a_run_that_will_take_hours_says_so_once_with_the_flags_that_shrink_it(tmp_path, capsys, monkeypatch,
                                                                                 limit_s, expected_lines):
    from nas.train import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "SLOW_RUN_S", limit_s)  # every run is "slow" against a limit of 0 s
    data = build_data(TINY_DATA)
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=2, batch_size=50, warmup_epochs=0)  # 20 steps an epoch: timed over steps 9-16
    Trainer(MixerNet.from_arch(ARCH, TINY), data, cfg, tmp_path).fit()
    lines = [line for line in capsys.readouterr().out.splitlines() if "this run will take about" in line]
    assert len(lines) == expected_lines
    if lines:
        assert lines[0].startswith("note: ") and "2 epochs x 20 steps of 50 images at 32 px" in lines[0]
        assert "--img-size 16" in lines[0] and "--train-subset N" in lines[0] and "--epochs N" in lines[0]


@pytest.mark.slow
def test_unreadable_files_met_in_an_epoch_are_reported_once_at_its_end(tmp_path, capsys):
    from nas.settings import DataConfig, ModelOptions
    from tests.image_folders import write_image_folder, write_unreadable

    root = write_image_folder(tmp_path / "photos", {"cat": (10, 1), "dog": (10, 1)})
    for i in range(2):
        write_unreadable(root / "train" / "cat" / f"000{i}.png")  # two listed files that cannot be read
    data = build_data(DataConfig(dataset="imagefolder", root=str(root), img_size=32), in_memory=False)
    torch.manual_seed(0)
    net = MixerNet.from_arch(ARCH, ModelOptions().settings(data))
    Trainer(net, data, TrainConfig(epochs=2, batch_size=6, warmup_epochs=0), tmp_path, progress=False).fit()
    lines = [line for line in capsys.readouterr().out.splitlines() if "unreadable" in line]
    # each epoch reads every training and validation file once (drop_last may skip a broken one in training)
    assert [line.split(":")[0] for line in lines] == ["warning", "warning"]
    assert lines[0].startswith("warning: epoch 1: ") and lines[1].startswith("warning: epoch 2: ")
    assert all("each served the next readable file instead" in line for line in lines)

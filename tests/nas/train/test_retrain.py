"""Retraining at the Python level: exact resume, supernet init, loading, timm entry point, Ray Train."""
import pytest
import timm
import torch

from nas.hub import load_model
from nas.runs import checkpoint as ckpt
from nas.runs.run import Run
from nas.settings import RetrainJob, TrainConfig
from nas.train.retrain import build_network, retrain, retrain_worker
from nas.train.steps import WorkerContext
from searchspace import SearchSpace
from supernet import MixerNet
from tests.helpers import ARCH, TINY, TINY_DATA, TINY_SPACE


def job(epochs: int = 1) -> RetrainJob:
    return RetrainJob(ARCH.to_dict(), data=TINY_DATA,
                      train=TrainConfig(epochs=epochs, batch_size=50, warmup_epochs=0, lr=3e-3))


@pytest.mark.slow
def test_retrain_writes_metrics_and_a_loadable_model(tmp_path):
    m = retrain(job(2), Run(tmp_path), progress=False)
    for key in ("test_top1", "val_top1", "best_val_top1", "best_epoch", "splits", "params", "flops_deployment", "latency_ms_deployment", "wall_time_s", "config"):
        assert key in m
    assert m["test_top1"] > 0.3 and 1 <= m["best_epoch"] <= 2 and m["latency_ms_deployment"] > 0 and m["epochs"] == 2
    assert {p.name for p in tmp_path.iterdir()} >= {"metrics.json", "model.pt", "arch.json", "checkpoint.pt",
                                                     "metrics.csv", "config.json"}
    net = load_model(tmp_path)
    assert isinstance(net, torch.nn.Module) and not net.training
    x = torch.randn(3, 1, 32, 32)
    # the same weights through timm's registered entry point and timm's checkpoint loading
    via_timm = timm.create_model("mixernet", arch=str(tmp_path / "arch.json"), checkpoint_path=str(tmp_path / "model.pt"),
                                 **{k: v for k, v in TINY.to_dict().items() if k != "drop_path_rate"}).eval()
    with torch.no_grad():
        torch.testing.assert_close(via_timm(x), net(x))
        assert net(x).argmax(1).shape == (3,)


@pytest.mark.slow
def test_retrain_resumes_exactly(tmp_path):
    retrain(job(2), Run(tmp_path / "straight"), progress=False, measure_latency=False)

    def interrupt(metrics, path):
        raise KeyboardInterrupt

    split = tmp_path / "split"
    with pytest.raises(KeyboardInterrupt):
        retrain_worker(job(2), split, resume=False, context=WorkerContext(), progress=False,
                       on_epoch_end=interrupt)
    retrain(job(2), Run(split), resume=True, progress=False, measure_latency=False)
    a, b = ckpt.load(tmp_path / "straight" / "model.pt"), ckpt.load(split / "model.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_init_from_supernet_inherits_its_weights(tmp_path):
    space = SearchSpace.from_dict(TINY_SPACE)
    supernet = MixerNet(space, TINY)
    path = tmp_path / "supernet.pt"
    ckpt.save_atomic({"model": supernet.state_dict(), "settings": TINY.to_dict(), "space": space.to_dict()}, path)
    net = build_network(RetrainJob(ARCH.to_dict(), init="supernet", supernet=str(path)), TINY)
    expected = supernet.extract(ARCH).state_dict()
    assert all(torch.equal(net.state_dict()[k], expected[k]) for k in expected)
    scratch = build_network(RetrainJob(ARCH.to_dict()), TINY).state_dict()
    assert not all(torch.equal(scratch[k], expected[k]) for k in expected)


@pytest.mark.slow
def test_retrain_with_two_ray_train_workers(tmp_path):
    m = retrain(job(1), Run(tmp_path), num_workers=2, progress=False, measure_latency=False)
    assert m["epochs"] == 1 and (tmp_path / "model.pt").exists()
    assert load_model(tmp_path)(torch.randn(2, 1, 32, 32)).shape == (2, 10)

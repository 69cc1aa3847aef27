"""Old run files still load (issue #43): a supernet and a search folder written in earlier formats are read by
today's commands through ``nas.runs.migrate``, and an old supernet keeps the folder name a search finds it by."""
import json

from nas.runs import checkpoint as ckpt
from nas.runs.record import read_supernet_record
from nas.train.supernet import load_supernet
from searchspace import Arch, SearchSpace, save_arch_file
from supernet import MixerNet
from tests.helpers import TINY, TINY_SPACE, run_launch, tiny_job

ARCH = {"stages": [{"mixer": "dwconv", "kernel": 3, "depth": 1, "pool": p} for p in (1, 2, 2, 2)]}


def old_supernet_job() -> dict:
    """tiny_job(1) as a supernet of before bf16 and of before the fixed splits recorded it."""
    job = tiny_job(1).to_dict()
    job["data"]["seed"] = 0         # the split followed a seed then
    job["train"]["amp"] = None      # mixed precision was off by None
    job.pop("inplace_distill", None)
    return job


def test_an_old_supernet_file_loads_and_keeps_its_fingerprint(tmp_path):
    space = SearchSpace.from_dict(TINY_SPACE)
    net = MixerNet(space, TINY)
    path = tmp_path / "supernet.pt"
    ckpt.save_atomic({"model": net.state_dict(), "space": TINY_SPACE, "settings": TINY.to_dict(),
                      "job": old_supernet_job(), "history": []}, path)
    record = read_supernet_record(path)
    assert record.job == tiny_job(1) and record.space == space and record.settings == TINY
    assert record.job.fingerprint() == tiny_job(1).fingerprint()  # the search finds it under the same folder name
    loaded = load_supernet(path)
    assert all((loaded.state_dict()[k] == v).all() for k, v in net.state_dict().items())
    # and a command reads it: a data flag that contradicts it is refused, naming the supernet's value
    (tmp_path / "space.json").write_text(json.dumps(TINY_SPACE))
    done = run_launch("search", "--space", "space.json", "--supernet", str(path), "--train-subset", "200",
                      cwd=tmp_path)
    assert done.returncode == 2 and "train_subset = 1000" in done.stderr, done.stderr


def test_an_old_search_folder_feeds_a_retrain(tmp_path):
    # a search from before the fine-tuning steps: no finetune_steps, data with a seed, the network options only in
    # its supernet job; its best.json names the run but holds no data settings of its own
    run = tmp_path / "results" / "search-old"
    run.mkdir(parents=True)
    search = {"budget_flops": 4.5e9, "sampler": "tpe", "trials": 4, "seed": 0}
    (run / "config.json").write_text(json.dumps({
        "search": search, "supernet": "gone.pt", "data": {"dataset": "mnist", "root": None, "img_size": None,
                                                          "augment": True, "train_subset": 1000, "seed": 0},
        "supernet_job": old_supernet_job(), "space": TINY_SPACE}))
    save_arch_file(run / "best.json", Arch.from_dict(ARCH), search={"run": str(run), "budget_flops": 4.5e9})
    done = run_launch("retrain", "--arch", str(run / "best.json"), "--dataset", "cifar10", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "--dataset cifar10 contradicts the search" in done.stderr and "dataset = mnist" in done.stderr

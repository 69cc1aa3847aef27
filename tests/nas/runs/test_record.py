"""Run files checked without torch: a checkpoint that cannot be one is refused before the heavy imports, and a
supernet's recorded settings are read without torch."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from nas.errors import UserError
from nas.runs import checkpoint as ckpt
from nas.runs.layout import CHECKPOINT
from nas.runs.layout import SUPERNET as FINAL
from nas.runs.layout import checkpoint_file
from nas.runs.record import SUPERNET_RECORD, SupernetRecord
from nas.runs.record import read_supernet_record as supernet_record
from nas.runs.run import Run
from nas.settings import ModelOptions
from nas.train.supernet import train_supernet
from tests.helpers import ROOT, tiny_job


def test_checkpoint_file_accepts_what_torch_save_wrote_and_refuses_the_rest(tmp_path):
    good = tmp_path / "supernet.pt"
    ckpt.save_atomic({"model": {"w": torch.ones(3)}, "job": {}}, good)
    assert checkpoint_file(good) == good
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # a copy cut short
    (tmp_path / "space.json").write_text('{"stages": []}')
    for path, message in ((truncated, "not a readable checkpoint"), (tmp_path / "space.json", "not a readable checkpoint"),
                          (tmp_path / "missing.pt", "no such checkpoint"), (tmp_path, "no such checkpoint")):
        with pytest.raises(UserError, match=message):
            checkpoint_file(path)
        with pytest.raises(UserError, match=message):  # the loader says the same
            ckpt.load(path)
    assert ckpt.load(good)["model"]["w"].tolist() == [1.0, 1.0, 1.0]


def _touch(path: str) -> Path:  # what a file's pickle asks to run: the record reader must not run it
    Path(path).touch()
    return Path(path)


class _RunsOnLoad:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return _touch, (str(self.marker),)


def test_supernet_record_reads_without_torch_what_the_loader_reads(tmp_path):
    run = tmp_path / "sn"
    train_supernet(tiny_job(1), Run(run), progress=False)
    for name in (FINAL, CHECKPOINT):  # the final weights, and an epoch checkpoint with RNG and optimizer states
        state = torch.load(run / name, weights_only=False)
        record = supernet_record(run / name)
        assert record == SupernetRecord.from_state(state) and record.to_state() == {k: state[k] for k in SUPERNET_RECORD}
    # in a fresh interpreter: the record comes without importing torch
    script = ("import sys; from nas.runs.record import read_supernet_record; r = read_supernet_record(sys.argv[1]); "
              "print(r.job.data.train_subset, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script, str(run / FINAL)], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.split() == ["1000", "False"], done.stderr


def test_supernet_record_refuses_other_files_and_runs_nothing_of_them(tmp_path):
    marker = tmp_path / "ran"
    ckpt.save_atomic({"model": {}, "space": {}, "settings": {}, "job": _RunsOnLoad(marker)}, tmp_path / "odd.pt")
    ckpt.save_atomic({"model": {"w": torch.ones(2)}, "settings": {}, "job": {}}, tmp_path / "model.pt")  # no space
    with zipfile.ZipFile(tmp_path / "foreign.zip", "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")
    for name, message in (("odd.pt", "not a supernet checkpoint"), ("model.pt", "not a supernet checkpoint"),
                          ("foreign.zip", "not a readable checkpoint"), ("missing.pt", "no such checkpoint")):
        with pytest.raises(UserError, match=message):
            supernet_record(tmp_path / name)
    assert not marker.exists()
    torch.load(tmp_path / "odd.pt", weights_only=False)  # the check itself: loading it does run the call
    assert marker.exists()


def test_model_options_resolve_the_defaults_by_input_side_and_refuse_a_patch_that_does_not_tile():
    assert ModelOptions().resolve(32) == (16, 2) and ModelOptions().resolve(224) == (96, 4)
    assert ModelOptions(embed_dim=24, patch_size=3).resolve(36) == (24, 3)
    with pytest.raises(UserError, match="^--img-size 33 with --patch-size 2: the input side must be a multiple"):
        ModelOptions().resolve(33)  # a traceback from NetSettings before

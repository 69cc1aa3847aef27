"""Run files checked without torch: a checkpoint that cannot be one is refused before the heavy imports."""
import pytest
import torch

from nas import checkpoint as ckpt
from nas.errors import UserError
from nas.jobs import checkpoint_file


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

"""``launch.py space`` and ``launch.py cost`` as a user runs them, bad input included."""
import json

import pytest

from tests.helpers import run_launch, swin_t_arch


def test_space_lists_choices_size_and_extremes():
    done = run_launch("space")
    assert done.returncode == 0, done.stderr
    assert "1,679,616 archs" in done.stdout
    assert "cheapest" in done.stdout and "1.65G FLOPs" in done.stdout
    assert "dearest" in done.stdout and "99.15G FLOPs" in done.stdout
    data = json.loads(run_launch("space", "--json").stdout)
    assert data["size"] == 1_679_616 and len(data["stages"]) == 4
    assert data["cheapest"]["flops"] < 4.5e9 < data["dearest"]["flops"]


@pytest.mark.slow
def test_cost_of_swin_t_is_timm_swin_tiny(tmp_path):
    path = tmp_path / "swin_t.json"
    path.write_text(json.dumps({**swin_t_arch().to_dict(), "name": "Swin-T", "metrics": {"top1": 81.2}}))
    done = run_launch("cost", "--arch", str(path), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["flops"] == 4_509_194_496 and data["params"] == 28_288_354
    assert data["flops_analytic"] == data["flops"]
    human = run_launch("cost", "--arch", str(path))
    assert "4.51G FLOPs" in human.stdout and "28.29M params" in human.stdout


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{\"stages\": [", "invalid JSON at line 1"),
    (json.dumps({"stages": swin_t_arch().to_dict()["stages"][:3]}), "expected 4 stages, got 3"),
    (json.dumps({"stages": [dict(s, kernel=9) if i == 1 else s for i, s in enumerate(swin_t_arch().to_dict()["stages"])]}),
     "stage 2: field 'kernel': 9 is not one of [3, 5, 7]"),
    (json.dumps({"stages": [dict(s, depth="2") if i == 3 else s for i, s in enumerate(swin_t_arch().to_dict()["stages"])]}),
     "stage 4: field 'depth' must be int, got \"2\""),
    (json.dumps({"stages": [dict(s, mixer="mlp") if i == 0 else s for i, s in enumerate(swin_t_arch().to_dict()["stages"])]}),
     "stage 1: field 'mixer': 'mlp' is not one of"),
])
def test_cost_bad_arch_files(tmp_path, content, message):
    path = tmp_path / "arch.json"
    if content is not None:
        path.write_text(content)
    done = run_launch("cost", "--arch", str(path))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr  # one line, no traceback
    assert str(path) in done.stderr and message in done.stderr


def test_unreadable_arch_file(tmp_path):
    done = run_launch("cost", "--arch", str(tmp_path))  # a folder, not a file
    assert done.returncode == 2 and str(tmp_path) in done.stderr and "Traceback" not in done.stderr

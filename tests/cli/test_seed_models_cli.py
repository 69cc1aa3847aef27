"""``launch.py search --seed-models``: the seed papers' models are the first trials, beside what the search finds."""
import csv
import json

import pytest

from tests.helpers import SUPERNET_FLAGS, run_launch

pytestmark = pytest.mark.slow  # trains a supernet and runs a Ray search

# The published depths and pools (2-2-6-2), kernel 7 beside 3: the three seed models are points of it.
SPACE = {"stages": [{"mixers": ["window_attention", "dwconv", "dynamic_dwconv"], "kernels": [3, 7], "depths": depths,
                     "pools": pools} for depths, pools in (([1, 2], [1]), ([1, 2], [2]), ([2, 6], [2]), ([1, 2], [2]))]}
SWIN_T, DWNET_T, DYNAMIC_DWNET_T = "wa7x2p1-wa7x2p2-wa7x6p2-wa7x2p2", "dw7x2p1-dw7x2p2-dw7x6p2-dw7x2p2", \
    "dd7x2p1-dd7x2p2-dd7x6p2-dd7x2p2"


def test_the_seed_models_are_the_first_trials_and_one_over_the_budget_is_rejected(tmp_path):
    (tmp_path / "space.json").write_text(json.dumps(SPACE))
    done = run_launch("search", "--space", "space.json", "--budget", "4.5GFLOPs", *SUPERNET_FLAGS, "--seed-models",
                      "--trials", "3", "--finetune-steps", "0", "--score", "top1", "--latency", "measure",
                      "--search-dir", "results/s", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "results/s/trials.csv").open()))
    # Swin-T costs 4.51 GFLOPs: suggested first and rejected; DWNet-T and dynamic DWNet-T are the first two trials.
    assert [(r["arch"], r["state"]) for r in rows[:3]] == [(SWIN_T, "rejected_over_budget"), (DWNET_T, "completed"),
                                                            (DYNAMIC_DWNET_T, "completed")]
    ran = [r for r in rows if r["state"] != "rejected_over_budget"]
    assert len(ran) == 3 and all(r["state"] == "completed" for r in ran)
    assert ran[2]["arch"] not in (DWNET_T, DYNAMIC_DWNET_T)  # the sampler's own
    assert json.loads((tmp_path / "results/s/config.json").read_text())["search"]["seed_models"] is True

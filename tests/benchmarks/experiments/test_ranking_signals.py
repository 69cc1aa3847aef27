"""benchmarks/experiments/ranking_signals.py: the from-scratch training loss is the product's fine-tuning run on fresh weights,
the calibration scores each draw by a ridge fitted without it (its ridge strength chosen without it too), and an
ensemble's tau is that of each arch's mean score over the supernets."""
import json
import random

import numpy as np
import pytest
import torch

from benchmarks.experiments.ranking_signals import (arch_features, ensemble_taus, fit_ridge, leave_one_draw_out,
                                                    nested_calibration)
from nas.data.datasets import build_data
from nas.errors import UserError
from nas.ranking.stats import kendall_tau
from nas.runs.run import Run
from nas.train.finetune import finetune
from nas.train.supernet import load_supernet_state, train_supernet
from searchspace import Arch, SearchSpace
from supernet import MixerNet
from supernet.network import NetSettings
from tests.helpers import TINY_SPACE, run_benchmark, tiny_job


def test_held_out_draw_labels_never_reach_its_prediction():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=30)
    draws = [f"d{i % 3}" for i in range(30)]
    before = leave_one_draw_out(x, y, draws, 1.0)
    scrambled = y.copy()
    scrambled[[d == "d1" for d in draws]] = rng.normal(size=10) * 100
    after = leave_one_draw_out(x, scrambled, draws, 1.0)
    held = np.array([d == "d1" for d in draws])
    assert np.allclose(before[held], after[held]) and not np.allclose(before[~held], after[~held])
    # and each held-out prediction is the ridge fitted on the other draws alone
    assert np.allclose(before[held], fit_ridge(x[~held], y[~held], 1.0)(x[held]))


def test_nested_calibration_recovers_a_linear_truth():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(48, 5))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    taus, strengths = nested_calibration(x, y, [f"d{i // 16}" for i in range(48)])
    assert len(taus) == 3 and min(taus) > 0.95 and all(s == min(strengths) for s in strengths)


def test_arch_features_follow_the_space():
    space = SearchSpace.from_dict(TINY_SPACE)
    arch = space.sample(random.Random(0))
    features = arch_features(space, arch.to_dict()["stages"])
    # per stage: one entry per mixer of the space, then kernel, depth and pool
    assert len(features) == sum(len(s["mixers"]) + 3 for s in TINY_SPACE["stages"])
    first = arch.to_dict()["stages"][0]
    assert features[:2] == [float(first["mixer"] == "dwconv"), float(first["mixer"] == "window_attention")]
    assert features[2] == first["kernel"] / 5


@pytest.fixture(scope="module")
def seeds_result(tmp_path_factory):
    """supernet_seeds.py's result on two tiny supernets (seeds 0, 1) against three made-up truth draws of 3 archs."""
    root = tmp_path_factory.mktemp("signals")
    supernet = train_supernet(tiny_job(1), Run(root / "supernet"), progress=False)
    rng, space = random.Random(0), SearchSpace.from_dict(TINY_SPACE)
    archs = list({a.key(): a for a in (space.sample(rng) for _ in range(200))}.values())[:9]
    paths = []
    for draw in range(3):
        chosen = archs[3 * draw:3 * draw + 3]
        truth = {"supernet": str(supernet), "config": {"recalib_batches": 1, "seed": draw},
                 "archs": [{"arch": a.key(), "stages": a.to_dict()["stages"], "standalone_top1": 0.5 + 0.03 * i,
                            "standalone_top1_per_seed": [0.5 + 0.03 * i, 0.51 + 0.03 * i]}
                           for i, a in enumerate(chosen)]}
        paths.append(root / f"truth{draw}.json")
        paths[-1].write_text(json.dumps(truth))
    done = run_benchmark("supernet_seeds", "--truth", *map(str, paths), "--seeds", "0,1", "--finetune-steps", "2",
                         "--out", str(root), cwd=root)
    assert done.returncode == 0, done.stderr
    return root / "supernet_seeds-e1.json"


@pytest.mark.slow
def test_reports_the_scratch_loss_and_the_calibration(seeds_result, tmp_path):
    done = run_benchmark("experiments.ranking_signals", "--rows", str(seeds_result), "--finetune-steps", "2",
                         "--scratch-steps", "2", "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "ranking_signals-scratch2.json").read_text())
    rows, (line, _) = data["rows"], data["summary"]["by_seed"]
    assert len(rows) == 18 and line["archs"] == 9
    all_rows, rows = rows, [r for r in rows if r["supernet_seed"] == 0]
    # the scratch loss is the product's fine-tuning run on fresh weights of the seed
    state = load_supernet_state(json.loads(seeds_result.read_text())["summary"]["checked_supernet"])
    space, data_bundle = SearchSpace.from_dict(state["space"]), build_data(tiny_job(1).data)
    row = rows[0]
    arch = space.validate(Arch.from_dict({"stages": next(
        a["stages"] for p in json.loads(seeds_result.read_text())["summary"]["truth"]
        for a in json.loads(open(p).read())["archs"] if a["arch"] == row["arch"])}))
    torch.manual_seed(0)
    net = MixerNet.from_arch(arch, NetSettings.from_dict(state["settings"]))
    assert row["scratch_train_loss"] == pytest.approx(finetune(net, data_bundle.train, tiny_job(1).train, steps=2, seed=0))
    truth = [r["standalone_top1"] for r in rows]
    assert line["tau_neg_scratch_loss"] == pytest.approx(kendall_tau([-r["scratch_train_loss"] for r in rows], truth))
    assert line["tau_neg_three_losses"] == pytest.approx(kendall_tau(
        [-(r["inherited_val_loss"] + r["finetune_train_loss"] + r["scratch_train_loss"]) for r in rows], truth))
    assert -1 <= line["per_draw_tau_calibrated_top1"] <= 1 and len(line["ridge_strengths_top1"]) == 3
    # the ensemble of both supernets: each arch's mean score over them, the scratch loss added once
    (ensemble,) = data["summary"]["ensembles"]
    assert ensemble["supernet_seeds"] == [0, 1] and ensemble["archs"] == 9
    archs = sorted({r["arch"] for r in all_rows})
    pair = {a: [r for r in all_rows if r["arch"] == a] for a in archs}
    truth = [pair[a][0]["standalone_top1"] for a in archs]
    loss_sum = [-sum(r["inherited_val_loss"] + r["finetune_train_loss"] for r in pair[a]) / 2 for a in archs]
    assert ensemble["tau_top1"] == pytest.approx(kendall_tau(
        [sum(r["inherited_top1"] for r in pair[a]) / 2 for a in archs], truth))
    assert ensemble["tau_neg_val_train_loss"] == pytest.approx(kendall_tau(loss_sum, truth))
    assert ensemble["tau_neg_three_losses"] == pytest.approx(kendall_tau(
        [s - pair[a][0]["scratch_train_loss"] for s, a in zip(loss_sum, archs)], truth))
    assert data["summary"]["ensemble_mean_by_size"]["2"]["tau_top1"] == pytest.approx(ensemble["tau_top1"])


def test_ensembles_cover_every_subset_and_need_every_seed():
    rows = [{"supernet_seed": s, "arch": a, "standalone_top1": t, "inherited_top1": t + 0.1 * s,
             "inherited_val_loss": 1 - t, "finetune_train_loss": 1 - t} for s in range(3)
            for a, t in (("a", 0.5), ("b", 0.7), ("c", 0.6))]
    lines = ensemble_taus(rows, {})
    assert [e["supernet_seeds"] for e in lines] == [[0, 1], [0, 2], [1, 2], [0, 1, 2]]
    assert all(e["tau_top1"] == pytest.approx(1.0) and "tau_neg_three_losses" not in e for e in lines)
    with pytest.raises(UserError, match="every supernet seed"):
        ensemble_taus(rows[:-1], {})


@pytest.mark.slow
def test_bad_rows_file_exits_2(tmp_path):
    bad = tmp_path / "rows.json"
    bad.write_text(json.dumps({"archs": []}))
    done = run_benchmark("experiments.ranking_signals", "--rows", str(bad), cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "supernet_seeds.py" in done.stderr

"""benchmarks/supernet_seeds.py and the default task's truth kept beside it (benchmarks/truth/): the truth must stay
the archs ``check-ranking --seed d`` draws (a change to the space, the draw rule or the cost model makes it stale),
and the script must score supernets as check-ranking does and report their ensemble."""
import json
import random
import statistics
from pathlib import Path

import pytest

from nas.ranking.arch_sets import band_archs
from nas.ranking.stats import kendall_tau
from nas.runs.run import Run
from nas.train.supernet import train_supernet
from searchspace import DEPLOYMENT, Arch, Budget, SearchSpace, arch_cost
from tests.helpers import ROOT, TINY_SPACE, run_benchmark, tiny_job

TRUTH = sorted((ROOT / "benchmarks" / "truth").glob("mnist-cluttered-draw*.json"))


def test_the_kept_truth_is_what_check_ranking_draws():
    assert [p.name for p in TRUTH] == [f"mnist-cluttered-draw{d}.json" for d in range(4)]
    space = SearchSpace.default()
    for draw, path in enumerate(TRUTH):
        truth = json.loads(path.read_text())
        assert truth["config"]["seed"] == draw and truth["config"]["budget_flops"] == 4.5e9
        assert not Path(truth["supernet"]).is_absolute() and truth["supernet_command"].startswith("python launch.py")
        drawn = band_archs(space, Budget(flops=4.5e9), 16, seed=draw)
        assert [a["arch"] for a in truth["archs"]] == [a.key() for a in drawn]
        for item, arch in zip(truth["archs"], drawn):
            assert Arch.from_dict({"stages": item["stages"]}) == arch
            assert item["flops"] == pytest.approx(arch_cost(arch, DEPLOYMENT).flops)
            assert len(item["standalone_top1_per_seed"]) == 5
            assert item["standalone_top1"] == pytest.approx(statistics.fmean(item["standalone_top1_per_seed"]))


def test_the_kept_photo_truth_is_check_rankings_draw_and_its_reported_taus():
    # docs/BENCHMARKS.md, "Real photos": the quick CIFAR-10 setting's truth (seeds 0-2 of each arch)
    path = ROOT / "benchmarks" / "truth" / "cifar10-quick-draw0.json"
    truth = json.loads(path.read_text())
    assert truth["data"]["dataset"] == "imagefolder" and truth["data"]["train_subset"] == 10_000
    assert truth["data"]["img_size"] == 32 and truth["recipe"]["epochs"] == 10
    drawn = band_archs(SearchSpace.default(), Budget(flops=4.5e9), 16, seed=0)
    assert [a["arch"] for a in truth["archs"]] == [a.key() for a in drawn]
    stand_alone = [a["standalone_top1"] for a in truth["archs"]]
    assert all(len(a["standalone_top1_per_seed"]) == truth["num_seeds"] == 3 for a in truth["archs"])
    assert all(a["standalone_top1"] == pytest.approx(statistics.fmean(a["standalone_top1_per_seed"]))
               for a in truth["archs"])
    assert kendall_tau([a["inherited_top1"] for a in truth["archs"]], stand_alone) == pytest.approx(0.711, abs=5e-4)
    assert kendall_tau([-(a["inherited_val_loss"] + a["inherited_train_loss"]) for a in truth["archs"]],
                       stand_alone) == pytest.approx(0.767, abs=5e-4)
    assert kendall_tau([a["inherited_top1_no_finetune"] for a in truth["archs"]], stand_alone) == pytest.approx(
        0.706, abs=5e-4)


@pytest.fixture(scope="module")
def tiny_truth(tmp_path_factory):
    """A check-ranking-shaped truth over 4 archs of the tiny space, on a tiny supernet (stand-alone figures made up:
    the script only compares with them)."""
    root = tmp_path_factory.mktemp("seeds")
    supernet = train_supernet(tiny_job(1), Run(root / "supernet"), progress=False)
    rng, space = random.Random(0), SearchSpace.from_dict(TINY_SPACE)
    archs = list({a.key(): a for a in (space.sample(rng) for _ in range(40))}.values())[:4]
    truth = {"supernet": str(supernet), "config": {"recalib_batches": 1, "seed": 0},
             "archs": [{"arch": a.key(), "stages": a.to_dict()["stages"], "standalone_top1": 0.5 + 0.1 * i,
                        "standalone_top1_per_seed": [0.5 + 0.1 * i, 0.5 + 0.1 * i + 0.01]}
                       for i, a in enumerate(archs)]}
    path = root / "truth.json"
    path.write_text(json.dumps(truth))
    return path


def run_script(*args, cwd):
    return run_benchmark("supernet_seeds", *args, cwd=cwd)


@pytest.mark.slow
def test_scores_each_supernet_and_their_ensemble(tiny_truth, tmp_path):
    out = tmp_path / "out"
    done = run_script("--truth", str(tiny_truth), "--seeds", "0,1", "--finetune-steps", "0,2", "--out", str(out),
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads((out / "supernet_seeds-e1.json").read_text())
    rows = data["rows"]
    assert {(r["supernet_seed"], r["finetune_steps"]) for r in rows} == {(s, n) for s in (0, 1) for n in (0, 2)}
    assert len(rows) == 2 * 2 * 4
    # seed 0 is the checked supernet itself; seed 1 was trained from its job
    assert {r["supernet"] for r in rows if r["supernet_seed"] == 0} == {str(json.loads(tiny_truth.read_text())["supernet"])}
    for steps in (0, 2):
        chosen = [r for r in rows if r["finetune_steps"] == steps]
        archs = sorted({r["arch"] for r in chosen})
        truth = [next(r["standalone_top1"] for r in chosen if r["arch"] == a) for a in archs]
        mean_top1 = [statistics.fmean(r["inherited_top1"] for r in chosen if r["arch"] == a) for a in archs]
        by = data["summary"]["by_steps"][str(steps)]
        assert by["ensemble_tau_top1"] == pytest.approx(kendall_tau(mean_top1, truth), nan_ok=True)
        per_seed = [kendall_tau([next(r["inherited_top1"] for r in chosen if r["arch"] == a and r["supernet_seed"] == s)
                                 for a in archs], truth) for s in (0, 1)]
        assert by["mean_tau_top1"] == pytest.approx(statistics.fmean(per_seed), nan_ok=True)
        # minus (validation loss + the fine-tuning's mean training loss): only where there was fine-tuning
        if steps == 0:
            assert all(r["finetune_train_loss"] is None for r in chosen)
            assert by["mean_tau_neg_val_train_loss"] is None and by["ensemble_tau_neg_val_train_loss"] is None
        else:
            assert all(r["finetune_train_loss"] > 0 for r in chosen)
            mean_combined = [-statistics.fmean(r["inherited_val_loss"] + r["finetune_train_loss"]
                                               for r in chosen if r["arch"] == a) for a in archs]
            assert by["ensemble_tau_neg_val_train_loss"] == pytest.approx(kendall_tau(mean_combined, truth),
                                                                           nan_ok=True)
    assert "an ensemble" in done.stdout


@pytest.mark.slow
def test_a_kept_truth_without_its_supernet_names_the_command(tmp_path):
    truth = json.loads(TRUTH[0].read_text())
    truth["supernet"] = "results/supernet/no-such-supernet/supernet.pt"
    path = tmp_path / "truth.json"
    path.write_text(json.dumps(truth))
    done = run_script("--truth", str(path), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0] and "launch.py supernet --path-budget 4.5GFLOPs" in lines[0]


@pytest.mark.slow
def test_trains_sandwich_supernets_with_inplace_distillation(tiny_truth, tmp_path):
    out = tmp_path / "out"
    done = run_script("--truth", str(tiny_truth), "--seeds", "0", "--finetune-steps", "0", "--path-sampler",
                      "sandwich", "--inplace-distill", "--recalib-batches", "2", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads((out / "supernet_seeds-sandwich-kd-e1.json").read_text())
    assert data["summary"]["path_sampler"] == "sandwich" and data["summary"]["inplace_distill"] is True
    assert {r["recalib_batches"] for r in data["rows"]} == {2}  # the flag's, not the check's (1)
    # not the checked (spos) supernet, even for its seed: one trained with the sandwich and distillation
    (trained,) = {r["supernet"] for r in data["rows"]}
    assert trained != json.loads(tiny_truth.read_text())["supernet"]
    job = json.loads((Path(trained).parent / "config.json").read_text())["job"]
    assert job["path_sampler"] == "sandwich" and job["inplace_distill"] is True and job["train"]["seed"] == 0
    for flags, message in ((["--inplace-distill"], "needs the sandwich sampler"),
                           (["--recalib-batches", "0"], "--recalib-batches must be at least 1")):
        refused = run_script("--truth", str(tiny_truth), *flags, "--out", str(out), cwd=tmp_path)
        assert refused.returncode == 2 and message in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_fine_tuning_variants_reach_the_evaluation_and_are_recorded(tiny_truth, tmp_path):
    out = tmp_path / "out"
    runs = {}
    for name, flags in (("plain", []), ("variant", ["--finetune-warmup", "1", "--finetune-average-last", "2"])):
        done = run_script("--truth", str(tiny_truth), "--seeds", "0", "--finetune-steps", "0,2", *flags,
                          "--out", str(out), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        runs[name] = json.loads((out / f"supernet_seeds-e1{'-warm1-avg2' if flags else ''}.json").read_text())
    summary = runs["variant"]["summary"]
    assert summary["finetune_warmup"] == 1 and summary["finetune_average_last"] == 2
    by_key = {name: {(r["arch"], r["finetune_steps"]): r for r in data["rows"]} for name, data in runs.items()}
    for key, row in by_key["variant"].items():
        plain, steps = by_key["plain"][key], key[1]
        assert (row["finetune_warmup"], row["finetune_average_last"]) == ((1, 2) if steps else (0, 0))
        if steps == 0:  # the weights as they are: the variants do not apply
            assert row["inherited_val_loss"] == plain["inherited_val_loss"]
    assert any(row["inherited_val_loss"] != by_key["plain"][key]["inherited_val_loss"]
               for key, row in by_key["variant"].items() if key[1] == 2)
    refused = run_script("--truth", str(tiny_truth), "--finetune-steps", "0,2", "--finetune-warmup", "2",
                         "--out", str(out), cwd=tmp_path)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "--finetune-warmup 2 and --finetune-average-last 0 must lie within" in refused.stderr

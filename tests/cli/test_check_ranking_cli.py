"""``launch.py check-ranking``, and the data settings a reused supernet or search imposes (issue #9)."""
import json
import math
import os

import pytest

from nas.ranking.stats import best_fraction_agreement, kendall_tau, noise_ceiling_tau, spearman_rho
from nas.settings import FINETUNE_STEPS
from searchspace import save_arch_file
from tests.helpers import ARCH, BUDGET, SUPERNET_FLAGS, TINY_SPACE, run_launch

pytestmark = pytest.mark.slow  # every test here runs launch.py with training or Ray

RECIPE = ["--epochs", "1", "--batch-size", "50"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("ranking")
    (work / "space.json").write_text(json.dumps(TINY_SPACE))
    done = run_launch("supernet", "--space", "space.json", *SUPERNET_FLAGS, "--run-dir", "sn", cwd=work)
    assert done.returncode == 0, done.stderr[-2000:]
    return work


def test_check_ranking_trains_caches_and_reports(work):
    # two runs at a time whatever the machine (Ray counts at most os.cpu_count() CPUs)
    slots = ["--cpus-per-trial", str(os.cpu_count() / 2)]
    done = run_launch("check-ranking", "--supernet", "sn/supernet.pt", "--archs", "3", "--seeds", "2",
                      "--budget", BUDGET, *RECIPE, *slots, cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "0 stand-alone runs cached" in done.stdout and "6 to train" in done.stdout
    # A finished run's process takes the next run: no new process importing torch and timm again per run.
    pids = [json.loads(path.read_text().splitlines()[-1])["pid"]  # Tune records each result's process
            for path in (work / "sn" / "ranking" / "standalone").glob("*/ray/*/*/result.json")]
    assert len(pids) == 6 and len(set(pids)) <= 2, pids
    summary = json.loads((work / "sn" / "ranking" / "ranking.json").read_text())
    assert summary["num_archs"] == 3 and summary["num_seeds"] == 2
    inherited = [r["inherited_top1"] for r in summary["archs"]]
    truth = [r["standalone_top1"] for r in summary["archs"]]
    # the headline figures are the rank statistics of the rows the report lists, by the search's default score:
    # minus (validation loss + the fine-tuning steps' mean training loss)
    assert summary["score"] == "loss"
    combined = [-(r["inherited_val_loss"] + r["inherited_train_loss"]) for r in summary["archs"]]
    assert summary["kendall_tau"] == pytest.approx(kendall_tau(combined, truth))
    assert summary["spearman_rho"] == pytest.approx(spearman_rho(combined, truth))
    assert summary["top1_tau"] == pytest.approx(kendall_tau(inherited, truth))
    low, high = summary["kendall_tau_ci95"]
    assert -1 <= low <= summary["kendall_tau"] <= high <= 1
    flops = [r["flops"] for r in summary["archs"]]
    assert flops == sorted(flops) and max(flops) <= 1.6e9  # spread over the band, in FLOPs order
    for r in summary["archs"]:
        assert 0 <= r["inherited_top1"] <= 1 and len(r["standalone_top1_per_seed"]) == 2
        assert r["standalone_top1"] == pytest.approx(sum(r["standalone_top1_per_seed"]) / 2)
    # The truth's noise ceiling, from the same per-seed results the report lists (None only if not computable).
    ceiling = noise_ceiling_tau([r["standalone_top1_per_seed"] for r in summary["archs"]], seed=0)
    assert summary["noise_ceiling_tau"] == (None if math.isnan(ceiling) else pytest.approx(ceiling))
    losses = [r["inherited_val_loss"] for r in summary["archs"]]
    assert all(math.isfinite(loss) and loss > 0 for loss in losses)
    assert summary["neg_val_loss_tau"] == pytest.approx(kendall_tau([-loss for loss in losses], truth))
    # plus each arch's mean training loss over its fine-tuning steps
    assert all(r["inherited_train_loss"] > 0 for r in summary["archs"])
    assert summary["neg_val_train_loss_tau"] == pytest.approx(kendall_tau(combined, truth))
    # each arch fine-tuned as the search does by default; the report also ranks the weights as they were
    assert summary["config"]["finetune_steps"] == FINETUNE_STEPS and "fine-tuning steps: tau" in done.stdout
    as_is = [r["inherited_top1_no_finetune"] for r in summary["archs"]]
    assert all(0 <= v <= 1 for v in as_is)
    assert summary["no_finetune_tau"] == pytest.approx(kendall_tau(as_is, truth))
    assert summary["neg_flops_tau"] == pytest.approx(kendall_tau([-f for f in flops], truth))
    for key in ("kendall_tau", "top1_tau", "spearman_rho", "neg_flops_tau", "neg_val_loss_tau",
                "neg_val_train_loss_tau", "no_finetune_tau"):  # NaN is written as None: neither may stand in for a figure
        assert isinstance(summary[key], float) and math.isfinite(summary[key]), key
    # where a search chooses: the truth's best quarter (2 of 3 archs) and the supernet's pick
    quarter = best_fraction_agreement(combined, truth, 0.25)
    assert summary["best_quarter"]["size"] == 2 and summary["best_quarter"]["shared"] == quarter["shared"]
    assert summary["best_quarter"]["pick_rank"] == quarter["pick_rank"] in (1, 2, 3)
    pick = combined.index(max(combined))
    assert summary["best_quarter"]["pick_regret"] == pytest.approx(max(truth) - truth[pick])
    assert "best quarter (2 archs by the truth)" in done.stdout and "supernet's best 2" in done.stdout
    assert (work / "sn" / "ranking" / "ranking.png").read_bytes()[:4] == b"\x89PNG"
    assert (work / "sn" / "ranking" / "ranking.csv").read_text().count("\n") == 4
    models = list((work / "sn" / "ranking" / "standalone").glob("*/*-seed*/model.pt"))
    assert len(models) == 6
    assert "Kendall tau" in done.stdout

    # again, with one more seed: only the new runs train, the rest come from the cache
    again = run_launch("check-ranking", "--supernet", "sn/supernet.pt", "--archs", "3", "--seeds", "3",
                       "--budget", BUDGET, *RECIPE, cwd=work)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "6 stand-alone runs cached" in again.stdout and "3 to train" in again.stdout
    assert json.loads((work / "sn" / "ranking" / "ranking.json").read_text())["num_seeds"] == 3

    # a search with this supernet prints its last check beside the front, and says when it evaluates otherwise
    search = run_launch("search", "--space", "space.json", "--supernet", "sn/supernet.pt", "--budget", BUDGET,
                        "--trials", "2", "--search-dir", "results/s", "--finetune-steps", "0", "--score", "top1",
                        cwd=work)
    assert search.returncode == 0, search.stderr[-3000:]
    assert "supernet ranking, checked" in search.stdout and "Kendall tau" in search.stdout
    assert f"that check fine-tuned each arch {FINETUNE_STEPS} steps, this search 0" in search.stdout
    assert "that check ordered the archs by --score loss, this search maximises top1" in search.stdout


def test_check_ranking_bad_input(work):
    outside = {"archs": [ARCH.to_dict(), {**ARCH.to_dict(), "stages": [{**s, "kernel": 9} for s in ARCH.to_dict()["stages"]]}]}
    (work / "archs.json").write_text(json.dumps(outside))
    for args, message in ((["--archs-file", "archs.json"], "archs.json: arch 2: stage 1: field 'kernel': 9"),
                          (["--seeds", "0"], "--seeds"),
                          (["--cpus-per-trial", "0"], "--cpus-per-trial 0"),
                          (["--archs", "1"], "--archs 1: must be >= 2"),
                          (["--budget", "4.5GB"], "4.5GB"),
                          (["--budget", "4.5"], "did you mean 4.5GFLOPs?"),
                          (["--finetune-steps", "-2"], "--finetune-steps -2"),
                          (["--finetune-steps", "0"], "--score loss with --finetune-steps 0")):
        done = run_launch("check-ranking", "--supernet", "sn/supernet.pt", *args, cwd=work)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_reused_supernet_imposes_its_data_settings(work):
    # regression: issue #9 -- a data flag that contradicts the supernet's exits 2 naming both values
    done = run_launch("search", "--space", "space.json", "--supernet", "sn/supernet.pt", "--train-subset", "200",
                      cwd=work)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--train-subset 200" in done.stderr and "train_subset = 1000" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = run_launch("search", "--space", "space.json", "--supernet", "sn/supernet.pt", "--dataset", "cifar10",
                      cwd=work)
    assert done.returncode == 2 and "--dataset cifar10" in done.stderr and "dataset = mnist" in done.stderr


def test_retrain_of_a_searched_arch_uses_the_search_data(work):
    search_run = work / "results" / "search-d"
    search_run.mkdir(parents=True)
    data = {"dataset": "mnist", "root": None, "img_size": None, "augment": True, "train_subset": 1000}
    save_arch_file(work / "best-d.json", ARCH, search={"run": str(search_run), "supernet": "sn/supernet.pt",
                                                       "data": data, "model": {"embed_dim": None, "patch_size": None}})
    refused = run_launch("retrain", "--arch", "best-d.json", "--space", "space.json", "--train-subset", "300",
                         *RECIPE, cwd=work)
    assert refused.returncode == 2 and "--train-subset 300" in refused.stderr and "= 1000" in refused.stderr
    refused = run_launch("retrain", "--arch", "best-d.json", "--space", "space.json", "--init", "supernet",
                         "--no-augment", *RECIPE, cwd=work)
    assert refused.returncode == 2 and "--no-augment" in refused.stderr
    done = run_launch("retrain", "--arch", "best-d.json", "--space", "space.json", *RECIPE, cwd=work)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((search_run / "retrain" / "metrics.json").read_text())
    assert metrics["config"]["job"]["data"]["train_subset"] == 1000  # the search's, without the flag
    assert 0 <= metrics["test_top1"] <= 1 and "test split" in metrics["splits"]["test_top1"]
    assert "test top-1" in done.stdout


def test_retrain_from_the_supernets_weights_takes_its_data_and_network(work):
    # the settings come from the supernet's record, read without torch; its weights start the run
    save_arch_file(work / "arch-i.json", ARCH)
    done = run_launch("retrain", "--arch", "arch-i.json", "--space", "space.json", "--init", "supernet", "--supernet",
                      "sn/supernet.pt", "--run-dir", "results/from-supernet", *RECIPE, cwd=work)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((work / "results" / "from-supernet" / "metrics.json").read_text())
    job = metrics["config"]["job"]
    assert job["init"] == "supernet" and job["supernet"] == "sn/supernet.pt"
    assert job["data"]["train_subset"] == 1000 and job["data"]["dataset"] == "mnist-cluttered"  # the supernet's
    assert metrics["config"]["settings"]["embed_dim"] == 16 and 0 <= metrics["test_top1"] <= 1

"""``launch.py search`` as a user runs it: outputs, budgets, the dashboard, Ctrl-C and --resume."""
import csv
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nas.cluster.session import auth_token
from nas.settings import FINETUNE_STEPS
from tests.helpers import BUDGET, ROOT, SUPERNET_FLAGS, TINY_SPACE, run_launch

pytestmark = pytest.mark.slow  # every test here runs launch.py with training or Ray


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with the tiny space and its trained supernet (search finds it by its settings)."""
    work = tmp_path_factory.mktemp("work")
    (work / "space.json").write_text(json.dumps(TINY_SPACE))
    done = run_launch("supernet", "--space", "space.json", *SUPERNET_FLAGS, cwd=work)
    assert done.returncode == 0, done.stderr
    return work


def read_trials(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


def search_args(search_dir: str, *extra: str) -> list[str]:
    # --train-all-paths: the supernet of the fixture (trained on every path) is the one these settings name
    return ["search", "--space", "space.json", "--budget", BUDGET, *SUPERNET_FLAGS, "--train-all-paths",
            "--search-dir", search_dir, "--max-concurrent", "2", *extra]


def dashboard_get(url: str, token: str | None) -> int:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_search_writes_every_output_and_keeps_the_budget(workdir):
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), *search_args("results/search-a", "--trials", "5",
                                                                                    "--sampler", "nsga2")],
                            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # while it runs, the dashboard's HTTP API (at the address the command prints) answers with
    # the token, and refuses without it
    err_lines: list[str] = []
    reader = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
    reader.start()
    statuses, deadline = {}, time.time() + 300
    while time.time() < deadline and proc.poll() is None and "with" not in statuses:
        urls = [m.group(1) for line in list(err_lines) if (m := re.search(r"Ray dashboard: (\S+)", line))]
        token = auth_token()
        if urls and token and dashboard_get(f"{urls[0]}/api/version", token) == 200:
            statuses["with"] = 200
            statuses["without"] = dashboard_get(f"{urls[0]}/api/version", None)
        time.sleep(0.5)
    out = proc.stdout.read()
    proc.wait(timeout=600)
    reader.join(timeout=10)
    err = "".join(err_lines)
    assert proc.returncode == 0, err[-3000:]
    assert statuses == {"with": 200, "without": 401}, statuses
    assert "Ray dashboard: http://127.0.0.1:" in err and "Authorization: Bearer" in err

    run = workdir / "results" / "search-a"
    rows = read_trials(run / "trials.csv")
    evaluated = [r for r in rows if r["state"] == "completed"]
    rejected = [r for r in rows if r["state"] == "rejected_over_budget"]
    assert len(evaluated) == 5
    assert all(int(r["flops"]) <= 1.6e9 for r in evaluated)
    assert rejected and all(int(r["flops"]) > 1.6e9 for r in rejected)  # half the tiny space is over the budget
    assert len({r["arch"] for r in evaluated}) == 5, "an arch is evaluated once"
    for r in evaluated:  # both scores of each evaluation; the default maximises the loss score
        assert 0 <= float(r["top1"]) <= 1 and float(r["neg_loss"]) < 0
        assert float(r["latency_ms"]) > 0 and int(r["params"]) > 0

    pareto = json.loads((run / "pareto.json").read_text())
    front = pareto["front"]
    assert pareto["score"] == "loss" and front and all(f["flops"] <= 1.6e9 for f in front)
    for a in front:  # no member is dominated by any evaluated arch
        for r in evaluated:
            dominates = (float(r["neg_loss"]) >= a["neg_loss"] and int(r["flops"]) <= a["flops"]
                         and float(r["latency_ms"]) <= a["latency_ms"])
            strictly = (float(r["neg_loss"]) > a["neg_loss"] or int(r["flops"]) < a["flops"]
                        or float(r["latency_ms"]) < a["latency_ms"])
            assert not (dominates and strictly)
    assert pareto["hypervolume"] > 0 and pareto["counts"]["completed"] == 5
    assert (run / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    best = json.loads((run / "best.json").read_text())
    assert best["metrics"]["neg_loss"] == pytest.approx(max(float(r["neg_loss"]) for r in evaluated))
    assert best["metrics"]["flops"] <= 1.6e9 and len(best["stages"]) == 4
    assert json.loads((workdir / "results" / "best.json").read_text()) == best
    config = json.loads((run / "config.json").read_text())
    assert config["search"]["sampler"] == "nsga2" and config["search"]["budget_flops"] == 1.6e9
    assert config["search"]["finetune_steps"] == FINETUNE_STEPS  # each arch fine-tuned before evaluation by default
    assert config["search"]["score"] == "loss"
    assert "Pareto front" in out and "results/best.json" in out
    assert "supernet ranking: never checked" in out
    assert list((workdir / "results" / "latency").glob("*.json")), "the latency table is cached"
    # cost of the best arch through the cost command agrees with the search's figure
    cost = run_launch("cost", "--arch", "results/best.json", "--space", "space.json", "--json", cwd=workdir)
    assert cost.returncode == 0 and json.loads(cost.stdout)["flops"] == best["metrics"]["flops"]


def test_interrupted_search_resumes_without_losing_or_repeating(workdir):
    args = search_args("results/search-b", "--trials", "6", "--sampler", "random", "--finetune-steps", "8")
    err_file = (workdir / "search-b.stderr").open("w")
    proc = subprocess.Popen([sys.executable, "-u", str(ROOT / "launch.py"), *args], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=err_file, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if sum(l.startswith("[") for l in lines) >= 2:
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            break
    out = "".join(lines) + proc.stdout.read()
    code = proc.wait(timeout=120)
    err_file.close()
    assert code == 130, out + (workdir / "search-b.stderr").read_text()[-3000:]
    assert "--resume" in out
    before = {r["trial"]: r for r in read_trials(workdir / "results" / "search-b" / "trials.csv")
              if r["state"] == "completed"}
    assert 2 <= len(before) < 6

    done = run_launch("search", "--space", "space.json", "--resume", "--search-dir", "results/search-b", cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    after = read_trials(workdir / "results" / "search-b" / "trials.csv")
    completed = [r for r in after if r["state"] == "completed"]
    assert len(completed) == 6 and len({r["trial"] for r in completed}) == 6
    assert len({r["arch"] for r in completed}) == 6
    for trial, row in before.items():  # kept, with the very same result
        match = [r for r in completed if r["trial"] == trial]
        assert match and match[0]["top1"] == row["top1"] and match[0]["arch"] == row["arch"]


def test_the_top1_score_chooses_the_front_and_the_pick(workdir):
    done = run_launch(*search_args("results/search-top1", "--trials", "4", "--score", "top1", "--finetune-steps", "2"),
                      cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    run = workdir / "results" / "search-top1"
    completed = [r for r in read_trials(run / "trials.csv") if r["state"] == "completed"]
    assert len(completed) == 4
    # every trial holds both scores of its one evaluation
    assert all(float(r["neg_loss"]) < 0 and 0 <= float(r["top1"]) <= 1 for r in completed)
    pick = max(completed, key=lambda r: (float(r["top1"]), -float(r["flops"])))
    best = json.loads((run / "best.json").read_text())
    assert best["name"] == pick["arch"] and best["metrics"]["top1"] == pytest.approx(float(pick["top1"]))
    pareto = json.loads((run / "pareto.json").read_text())
    assert pareto["score"] == "top1" and pick["arch"] in {m["arch"] for m in pareto["front"]}
    assert json.loads((run / "config.json").read_text())["search"]["score"] == "top1"
    assert "Pareto front (top-1" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--budget", "4.5GB"], "budget '4.5GB': expected a positive FLOP count"),
    (["--budget", "1G"], "below the cheapest arch"),
    (["--budget", "4.5"], "a number without a unit counts FLOPs, did you mean 4.5GFLOPs?"),
    (["--latency-budget", "25"], "latency budget '25'"),
    (["--sampler", "cmaes"], "invalid choice: 'cmaes'"),
    (["--resume", "--search-dir", "results/nowhere"], "no search to resume"),
    (["--supernet", "space.json"], "space.json: not a readable checkpoint"),
    # regression: issue #11 item 3 -- these ended in a Ray traceback
    (["--cpus-per-trial", "0"], "--cpus-per-trial 0 with no GPU"),
    (["--cpus-per-trial", "-1"], "cannot be negative"),
    (["--gpus-per-trial", "1.5"], "--gpus-per-trial 1.5"),
    (["--finetune-steps", "-1"], "--finetune-steps -1"),
    (["--score", "loss", "--finetune-steps", "0"], "--score loss with --finetune-steps 0"),
    (["--score", "accuracy"], "invalid choice: 'accuracy'"),
])
def test_bad_search_arguments(workdir, args, message):
    done = run_launch("search", "--space", "space.json", *args, cwd=workdir)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_used_search_dir_is_refused_before_any_work(workdir):
    used = workdir / "results" / "used"
    used.mkdir(parents=True, exist_ok=True)
    (used / "config.json").write_text("{}")
    done = run_launch("search", "--space", "space.json", "--search-dir", "results/used", "--epochs", "99", cwd=workdir)
    assert done.returncode == 2 and "a search already ran here" in done.stderr
    assert "training one" not in done.stdout  # it did not start training a supernet first

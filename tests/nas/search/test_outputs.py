"""The search's outputs follow its score: the front, the pick, the hypervolume and the files."""
import csv
import json
import random

import pytest

from nas.search.outputs import feasible_rows, hypervolume, pareto_front, trial_row, write_search_outputs
from nas.search.score import NEG_LOSS, TOP1
from searchspace import Budget, SearchSpace


@pytest.fixture
def rows():
    """Four evaluated archs whose top-1 and loss sum disagree on the best, one without the loss (no steps), and
    one suggestion rejected over the budget."""
    archs = list({a.key(): a for a in (SearchSpace.default().sample(random.Random(s))
                                       for s in range(40))}.values())[:6]
    scored = [(0.60, -3.40, 2.0e9, 60.0), (0.55, -3.10, 2.5e9, 70.0), (0.50, -3.60, 1.8e9, 50.0),
              (0.45, -3.80, 3.0e9, 90.0), (0.58, None, 1.9e9, 55.0)]
    out = [trial_row(f"t{i}", a, "completed", top1=t, neg_loss=n, flops=f, params=1_000_000, latency_ms=ms)
           for i, (a, (t, n, f, ms)) in enumerate(zip(archs, scored))]
    out.append(trial_row("r0", archs[5], "rejected_over_budget", flops=9e9, params=1_000_000, latency_ms=200.0))
    return out


def test_the_front_and_the_pick_follow_the_score(rows, tmp_path):
    budget = Budget(flops=4.5e9)
    by_top1 = write_search_outputs(tmp_path / "a", rows, budget=budget, results_root=tmp_path / "a", title="t",
                                   score=TOP1)
    by_loss = write_search_outputs(tmp_path / "b", rows, budget=budget, results_root=tmp_path / "b", title="t",
                                   score=NEG_LOSS)
    assert by_top1["best"]["trial"] == "t0" and by_loss["best"]["trial"] == "t1"
    # A row without the loss cannot be ranked by it; t3 is dominated either way, t1 only in top-1 (by t0).
    assert {r["trial"] for r in feasible_rows(rows, budget, NEG_LOSS)} == {"t0", "t1", "t2", "t3"}
    assert {r["arch"] for r in by_loss["front"]} == {rows[i]["arch"] for i in (0, 1, 2)}
    assert {r["arch"] for r in by_top1["front"]} == {rows[i]["arch"] for i in (0, 2, 4)}
    pareto = json.loads((tmp_path / "b" / "pareto.json").read_text())
    assert pareto["score"] == "loss" and set(pareto["hypervolume_reference"]) == {"neg_loss", "flops", "latency_ms"}
    assert 0 < pareto["hypervolume"] < 1
    assert json.loads((tmp_path / "a" / "pareto.json").read_text())["hypervolume_reference"]["top1"] == 0.0
    best = json.loads((tmp_path / "b" / "best.json").read_text())
    assert best["name"] == rows[1]["arch"] and best["metrics"]["neg_loss"] == -3.10 and best["metrics"]["top1"] == 0.55
    written = list(csv.DictReader((tmp_path / "b" / "trials.csv").open()))
    assert [r["neg_loss"] for r in written] == ["-3.4", "-3.1", "-3.6", "-3.8", "", ""]
    assert (tmp_path / "b" / "pareto.png").stat().st_size > 0


def test_the_hypervolume_grows_with_a_better_front_in_either_score(rows):
    for score in (TOP1, NEG_LOSS):
        scored = [r for r in rows if r.get(score.key) is not None and r["state"] == "completed"]
        front = pareto_front(scored, score)
        ref = score.reference_for([r[score.key] for r in scored])
        assert hypervolume(front, 4.5e9, 100.0, score, ref) > hypervolume([rows[3]], 4.5e9, 100.0, score, ref) > 0
    # top-1's reference is fixed at 0: the figure is what it was before the scores
    front = pareto_front(rows[:4], TOP1)
    assert hypervolume(front, 4.5e9, 100.0, TOP1) == hypervolume(front, 4.5e9, 100.0, TOP1, 0.0)

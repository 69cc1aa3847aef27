"""benchmarks/front_operators.py: the pick's stage choices and leads, and two runs' agreement, from the files a search
writes."""
import json

import pytest

from benchmarks.front_operators import agreement, describe_run
from nas.search.outputs import trial_row, write_search_outputs
from nas.search.score import TOP1
from searchspace import Arch, Budget
from tests.helpers import run_benchmark


def arch(key_stages: list[tuple[str, int, int, int]]) -> Arch:
    return Arch.from_dict({"stages": [{"mixer": m, "kernel": k, "depth": d, "pool": p} for m, k, d, p in key_stages]})


DW = arch([("dwconv", 7, 2, 1), ("dwconv", 7, 2, 2), ("dwconv", 7, 6, 2), ("dwconv", 7, 2, 2)])
WA2 = arch([("dwconv", 7, 2, 1), ("window_attention", 7, 1, 2), ("dwconv", 5, 6, 2), ("dwconv", 5, 2, 2)])
DD1 = arch([("dynamic_dwconv", 3, 1, 1), ("dwconv", 3, 1, 2), ("dwconv", 3, 2, 2), ("dwconv", 3, 1, 2)])


def write_run(folder, rows: list[tuple[Arch, float, float]], supernet_seed: int) -> None:
    folder.mkdir()
    trial_rows = [trial_row(f"t{i}", a, "completed", flops=flops, params=1, top1=top1, latency_ms=flops / 1e8)
                  for i, (a, top1, flops) in enumerate(rows)]
    trial_rows.append(trial_row("t9", arch([("window_attention", 7, 2, 1)] * 4), "rejected_over_budget", flops=9e9,
                                params=1, latency_ms=90.0))
    write_search_outputs(folder, trial_rows, budget=Budget(flops=4.5e9), results_root=folder, title="t", score=TOP1,
                         extra={"seed": 0})
    (folder / "config.json").write_text(json.dumps({"search": {"seed": 0},
                                                    "supernet_job": {"train": {"seed": supernet_seed}}}))


def test_the_pick_its_stage_leads_and_two_runs_agreement(tmp_path):
    write_run(tmp_path / "a", [(WA2, 0.472, 3.5e9), (DW, 0.470, 3.7e9), (DD1, 0.45, 1.7e9)], supernet_seed=0)
    write_run(tmp_path / "b", [(DW, 0.480, 3.7e9), (WA2, 0.460, 3.5e9), (DD1, 0.45, 1.7e9)], supernet_seed=1)
    a, b = describe_run(tmp_path / "a"), describe_run(tmp_path / "b" / "pareto.json")
    assert a["pick"]["arch"] == WA2.key() and b["pick"]["arch"] == DW.key()
    assert (a["supernet_seed"], b["supernet_seed"]) == (0, 1) and a["completed_trials"] == 3
    # Stage 1: only DD1 has another mixer; stage 2: DW, the runner-up, has; stages 3-4: none has.
    assert a["pick_stage_leads"] == pytest.approx([0.472 - 0.45, 0.472 - 0.470, None, None])
    assert b["pick_stage_leads"][1] == pytest.approx(0.480 - 0.460)
    together = agreement(a, b)
    assert [s["mixer"] for s in together["stages"]] == [True, False, True, True]
    assert [s["kernel"] for s in together["stages"]] == [True, True, False, False]
    assert together["pick_mixers_agree"] == 3


def test_the_command_reports_the_agreement_and_refuses_a_folder_without_a_search(tmp_path):
    write_run(tmp_path / "a", [(WA2, 0.472, 3.5e9), (DW, 0.470, 3.7e9)], supernet_seed=0)
    write_run(tmp_path / "b", [(DW, 0.480, 3.7e9), (WA2, 0.460, 3.5e9)], supernet_seed=1)
    done = run_benchmark("front_operators", str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                         str(tmp_path / "out.json"))
    assert done.returncode == 0, done.stderr
    assert "the picks' mixers agree at 3 of 4 stages" in done.stdout
    assert len(json.loads((tmp_path / "out.json").read_text())["agreement"]) == 1
    refused = run_benchmark("front_operators", str(tmp_path))
    assert refused.returncode == 2 and "not a search run folder" in refused.stderr
    assert "Traceback" not in refused.stderr

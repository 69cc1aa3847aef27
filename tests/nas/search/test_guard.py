"""The suggestion filters between the sampler and Ray Tune, each alone, through a real Optuna study (StudyPort)."""
import json

import optuna
import pytest
from optuna.trial import TrialState

from nas.runs.run import Run
from nas.search.constraints import BudgetConstraint
from nas.search.guard import (Duplicates, OverBudget, SuggestionLog, SuggestionOrder, StudyPort,
                              complete_objectives, objective_names)
from nas.search.samplers import make_optuna_sampler
from searchspace import DEPLOYMENT, Budget, SearchSpace, arch_cost
from tests.helpers import TINY_SPACE, swin_t_arch

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def port():
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                sampler=make_optuna_sampler("random", 0, 8))
    return StudyPort(study, objective_names("top1"))


def asked(port: StudyPort, probe: str):
    return port.ask(probe, {"x": optuna.distributions.CategoricalDistribution([0, 1])})


def test_over_budget_is_told_as_infeasible_and_within_budget_passes(port):
    space = SearchSpace.default()
    swin = swin_t_arch()  # 4.51 GFLOPs
    over = OverBudget(BudgetConstraint(space, Budget(flops=4.0e9)))
    asked(port, "a")
    handled = over.screen("a", swin, port)
    assert handled.reason == "rejected_over_budget" and handled.result["top1"] == 0.0
    assert handled.result["flops"] == arch_cost(swin, DEPLOYMENT).flops
    told = port.study.get_trials(deepcopy=False)[0]
    assert told.state == TrialState.COMPLETE and told.values[0] == 0.0 and told.constraints["flops_over_budget"] > 0
    roomy = OverBudget(BudgetConstraint(space, Budget(flops=5.0e9)))
    asked(port, "b")
    assert roomy.screen("b", swin, port) is None and "b" in port.asked  # left for the trial to tell


def test_a_measured_latency_over_the_budget_becomes_a_constraint(port):
    over = OverBudget(BudgetConstraint(SearchSpace.default(), Budget(flops=5.0e9, latency_s=0.05)))
    assert over.constraint.latency_after_trial  # no table: only a trial measures the latency
    asked(port, "a")
    result = {"top1": 0.5, "flops": 4.5e9, "latency_ms": 80.0}
    over.before_tell("a", result, port)
    port.tell("a", result)
    trial = port.study.get_trials(deepcopy=False)[0]
    assert trial.constraints["latency_over_budget"] == pytest.approx(80.0 / 50.0 - 1.0)


def test_duplicates_tell_the_known_result_and_prune_an_arch_running_now(port):
    space = SearchSpace.from_dict(TINY_SPACE)
    arch, other = space.sample(__import__("random").Random(0)), swin_t_arch()
    duplicates = Duplicates()
    asked(port, "p1")
    assert duplicates.screen("p1", arch, port) is None
    duplicates.start("trial-1", arch)
    asked(port, "p2")
    assert duplicates.screen("p2", arch, port).reason == "running"
    assert port.study.get_trials(deepcopy=False)[-1].state == TrialState.PRUNED
    objectives = {"top1": 0.7, "flops": 1.0e9, "latency_ms": 3.0}
    duplicates.finish("trial-1", objectives)
    asked(port, "p3")
    handled = duplicates.screen("p3", arch, port)
    assert handled.reason == "repeat" and handled.result == objectives
    assert port.study.get_trials(deepcopy=False)[-1].values == [0.7, 1.0e9, 3.0]
    asked(port, "p4")
    assert duplicates.screen("p4", other, port) is None
    duplicates.start("trial-2", other)
    duplicates.finish("trial-2", None)  # failed: a later suggestion of it may run it again
    assert other.key() not in duplicates.evaluated and not duplicates.pending


def test_results_are_told_in_suggestion_order_whatever_order_trials_finish_in():
    order = SuggestionOrder(lag=2)
    order.add("t0")
    assert order.may_suggest()  # the first c suggestions need no result
    order.add("t1")
    assert not order.may_suggest()  # t2 waits for t0's result
    assert order.finish("t1", {"top1": 1}, False) == []  # t1 finished first: kept until t0 is told
    assert order.finish("t0", {"top1": 0}, False) == [("t0", {"top1": 0}, False)]
    assert order.may_suggest()
    order.add("t2")
    assert order.tellable() == [("t1", {"top1": 1}, False)]


def test_complete_objectives_needs_every_objective_and_no_error():
    full = {"top1": 0.5, "neg_loss": -3.1, "flops": 1.0, "latency_ms": 2.0, "state": "completed"}
    names = objective_names("top1")
    assert complete_objectives(full, False, names) == {"top1": 0.5, "flops": 1.0, "latency_ms": 2.0}
    assert complete_objectives(full, False, objective_names("loss")) == {"neg_loss": -3.1, "flops": 1.0,
                                                                            "latency_ms": 2.0}
    assert complete_objectives(full, True, names) is None and complete_objectives({"top1": 0.5}, False, names) is None
    assert complete_objectives({"top1": 0.5, "flops": 1.0, "latency_ms": 2.0}, False,
                               objective_names("loss")) is None  # a trial without the fine-tuning's loss


def test_the_log_records_suggestions_and_rejections_in_order(tmp_path):
    log = SuggestionLog(Run(tmp_path))
    log.rejected("a~1", swin_t_arch(), {"top1": 0.0, "flops": 4.5e9, "latency_ms": 1e6}, latency_known=False)
    log.suggested("a~2", "a")
    lines = [json.loads(line) for line in (tmp_path / "suggestions.jsonl").read_text().splitlines()]
    assert [line["state"] for line in lines] == ["rejected_over_budget", "suggested"]
    assert lines[0]["latency_ms"] is None and lines[0]["flops"] == 4.5e9 and lines[1]["trial"] == "a"


def test_a_restored_log_is_the_saved_states_not_what_a_killed_driver_wrote_after_it(tmp_path):
    log = SuggestionLog(Run(tmp_path))
    log.suggested("a~1", "a")
    saved = list(log.lines)  # the state a resume starts from
    log.suggested("b~2", "b")  # written after that save, then the driver was killed
    resumed = SuggestionLog(Run(tmp_path))
    resumed.restore(saved)
    resumed.suggested("c~2", "c")
    lines = [json.loads(line) for line in (tmp_path / "suggestions.jsonl").read_text().splitlines()]
    assert [line["trial"] for line in lines] == ["a", "c"] and resumed.lines == lines

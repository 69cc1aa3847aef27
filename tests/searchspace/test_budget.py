import json

import pytest

from searchspace import (DEPLOYMENT, SMALL, Budget, Cost, SearchSpace, SpaceError, arch_cost,
                         check_budget_covers_cheapest, extreme_archs, format_flops, format_params, parse_flops,
                         parse_latency, parse_params)
from searchspace.extremes import fewest_params


@pytest.mark.parametrize("text", ["4.5GFLOPs", "4.5G", "4500MFLOPs", "4.5e9", "4.5 GFLOPs", "4500M", "4.5Gflops"])
def test_budget_strings_parse(text):
    assert parse_flops(text) == pytest.approx(4.5e9)


@pytest.mark.parametrize("text", ["", "abc", "4.5GB", "-1G", "0", "G", "4.5 G FLOPs x", "nan", "inf"])
def test_bad_budget_strings_are_clear_errors(text):
    with pytest.raises(SpaceError, match="expected a positive FLOP count such as 4.5GFLOPs"):
        parse_flops(text)


@pytest.mark.parametrize("text, seconds", [("25ms", 0.025), ("0.025s", 0.025), ("25000us", 0.025), ("1e1ms", 0.01)])
def test_latency_strings(text, seconds):
    assert parse_latency(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["25", "25 min", "-3ms", "ms"])
def test_bad_latency_strings(text):
    with pytest.raises(SpaceError, match="latency budget"):
        parse_latency(text)


# --- Budget: the one object that says "over budget" ---------------------------------------------

def test_parameter_strings():
    for text in ("28M", "28e6", "28000k", "28 M params", "28Mparameters", "0.028G"):
        assert parse_params(text) == pytest.approx(28e6)
    for text in ("", "28MB", "-1M", "0", "M", "nan"):
        with pytest.raises(SpaceError, match="parameter budget .*: expected a positive parameter count such as 28M"):
            parse_params(text)


def test_budget_parse_reads_each_limit_given():
    assert Budget.parse("4.5GFLOPs", "25ms", "28M") == Budget(flops=4.5e9, params=28e6, latency_s=0.025)
    assert Budget.parse(flops="4.5G") == Budget(flops=4.5e9)
    assert Budget.parse(latency="25ms") == Budget(latency_s=0.025)
    assert Budget.parse() == Budget()
    with pytest.raises(SpaceError, match="latency budget '25'"):
        Budget.parse("4.5G", "25")


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), True, "4.5G"])
def test_a_limit_is_a_positive_number(value):
    with pytest.raises(SpaceError, match="budget flops: expected a positive number"):
        Budget(flops=value)


def test_violations_name_only_the_limits_that_apply():
    cost = Cost(flops=5_000_000_000, params=30_000_000)
    assert Budget(flops=4e9).violations(cost) == {"flops_over_budget": pytest.approx(0.25)}
    assert Budget(params=40e6).violations(cost) == {"params_over_budget": pytest.approx(-0.25)}
    # a latency limit with no latency known (measured only by a trial): not held against the cost
    assert Budget(latency_s=0.02).violations(cost) == {}
    assert Budget(latency_s=0.02).violations(cost, latency_s=0.03) == {"latency_over_budget": pytest.approx(0.5)}
    both = Budget(flops=5e9, latency_s=0.04).violations(cost, latency_s=0.03)
    assert list(both) == ["flops_over_budget", "latency_over_budget"]  # the constraint names a search tells Optuna
    assert both == {"flops_over_budget": 0.0, "latency_over_budget": pytest.approx(-0.25)}
    assert Budget().violations(cost, latency_s=1.0) == {}


def test_admits_is_every_violation_within():
    cost = Cost(flops=4_500_000_000, params=28_000_000)
    assert Budget(flops=4.5e9, params=28e6).admits(cost)  # the edge is within
    assert not Budget(flops=4.5e9 - 1).admits(cost) and not Budget(params=28e6 - 1).admits(cost)
    assert Budget(flops=5e9, latency_s=0.025).admits(cost) and Budget(flops=5e9, latency_s=0.025).admits(cost, 0.025)
    assert not Budget(flops=5e9, latency_s=0.025).admits(cost, latency_s=0.026)
    assert Budget().admits(cost, latency_s=100.0)
    for budget, latency in ((Budget(flops=4.4e9, latency_s=0.02), 0.01), (Budget(flops=4.6e9, params=1e6), None)):
        assert budget.admits(cost, latency) == (max(budget.violations(cost, latency).values()) <= 0)


def test_admits_arch_prices_the_arch_at_the_deployment_setting(space):
    arch = extreme_archs(space, DEPLOYMENT)[0]
    flops = arch_cost(arch, DEPLOYMENT).flops
    assert Budget(flops=flops).admits_arch(arch) and not Budget(flops=flops - 1).admits_arch(arch)
    assert Budget(flops=flops - 1).admits_arch(arch, SMALL)  # far cheaper at 32 px
    assert not Budget(latency_s=0.01).admits_arch(arch, latency_s=0.02)


# small enough to enumerate, with every mixer, both pool ops and both resolutions after stage 1
ENUMERABLE = SearchSpace.from_dict({"stages": [
    {"mixers": ["window_attention", "linear_angular"], "kernels": [3, 5], "depths": [1, 2], "pools": [1]},
    {"mixers": ["dwconv", "inhomogeneous_dwconv"], "kernels": [3, 7], "depths": [1], "pools": [1, 2],
     "pool_ops": ["merge", "maxpool"]},
    {"mixers": ["dynamic_dwconv", "window_attention"], "kernels": [3, 5], "depths": [1, 3], "pools": [1, 2]}]})


def test_fewest_params_is_exact_on_an_enumerable_space():
    assert fewest_params(ENUMERABLE, DEPLOYMENT) == min(arch_cost(a, DEPLOYMENT).params for a in ENUMERABLE)
    assert fewest_params(ENUMERABLE, SMALL) == min(arch_cost(a, SMALL).params for a in ENUMERABLE)


def test_check_covers_cheapest_refuses_a_budget_no_arch_meets(space):
    cheapest = arch_cost(extreme_archs(space, DEPLOYMENT)[0], DEPLOYMENT).flops
    Budget(flops=cheapest).check_covers_cheapest(space, "budget X")  # the cheapest arch itself is within
    Budget().check_covers_cheapest(space, "no budget")
    with pytest.raises(SpaceError) as info:
        Budget(flops=cheapest - 1).check_covers_cheapest(space, "budget 1.9G")
    assert str(info.value) == f"budget 1.9G is below the cheapest arch of the space ({format_flops(cheapest)} FLOPs)"
    with pytest.raises(SpaceError, match=r"^budget 4.5 is below the cheapest arch of the space \(.* FLOPs\): a number "
                                         r"without a unit counts FLOPs, did you mean 4.5GFLOPs\?$"):
        Budget(flops=4.5).check_covers_cheapest(space, "budget 4.5")
    fewest = fewest_params(space, DEPLOYMENT)
    Budget(params=fewest).check_covers_cheapest(space, "params")
    with pytest.raises(SpaceError, match=rf"^--params 1M is below the smallest arch of the space "
                                         rf"\({format_params(fewest)} parameters\)$"):
        Budget(flops=1e12, params=1e6).check_covers_cheapest(space, "--params 1M")


def test_the_old_covering_check_is_the_budget_s(space):
    with pytest.raises(SpaceError, match="^path budget 1e\\+06 FLOPs is below the cheapest arch of the space"):
        check_budget_covers_cheapest(space, DEPLOYMENT, 1e6, "path budget 1e+06 FLOPs")
    check_budget_covers_cheapest(space, SMALL, 4e6, "fits at 32 px")  # the settings are its own


def test_describe():
    assert Budget(flops=4.5e9, latency_s=0.025).describe() == "4.50G FLOPs, 25.0 ms"
    assert Budget(params=28e6).describe() == "28.00M params"
    assert Budget().describe() == "no limit"


@pytest.mark.parametrize("budget", [Budget(), Budget(flops=4.5e9), Budget(flops=4.5e9, params=28e6, latency_s=0.025),
                                    Budget(latency_s=0.025)])
def test_to_dict_round_trip(budget):
    data = json.loads(json.dumps(budget.to_dict()))
    assert Budget.from_dict(data) == budget
    assert set(data) == {k for k in ("flops", "params", "latency_s") if getattr(budget, k) is not None}


def test_from_dict_refuses_what_is_not_a_budget():
    assert Budget.from_dict({"flops": 4.5e9, "latency_s": None}) == Budget(flops=4.5e9)
    with pytest.raises(SpaceError, match="job: unknown field 'gflops'"):
        Budget.from_dict({"gflops": 4.5}, source="job")
    with pytest.raises(SpaceError, match="job: budget params: expected a positive number, got -1"):
        Budget.from_dict({"params": -1}, source="job")
    with pytest.raises(SpaceError, match="expected an object"):
        Budget.from_dict([4.5e9])

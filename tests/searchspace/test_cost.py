"""The analytic cost against fvcore on built networks, and the published reference points."""
import itertools
import random

import pytest
import timm

from searchspace import DEPLOYMENT, Arch, NetSettings, SearchSpace, arch_cost, dearest_arch_within, extreme_archs
from supernet import MixerNet, fvcore_flops, num_params
from tests.helpers import NARROW_DEPLOYMENT, TINY, swin_t_arch

MID = NetSettings(img_size=112, embed_dim=16, num_classes=10, head_dim=16)


def test_swin_t_is_timm_swin_tiny():
    """Every stage window attention, kernel 7, depths 2,2,6,2, pools 1,2,2,2 IS Swin-T."""
    ours = MixerNet.from_arch(swin_t_arch(), DEPLOYMENT)
    theirs = timm.create_model("swin_tiny_patch4_window7_224")
    assert num_params(ours) == num_params(theirs) == 28_288_354
    flops = fvcore_flops(ours, 224, 3)
    assert flops == fvcore_flops(theirs, 224, 3) == 4_509_194_496
    assert arch_cost(swin_t_arch(), DEPLOYMENT).flops == flops
    # block for block: the same parameter shapes under the same roles
    ours_shapes = sorted(tuple(p.shape) for p in ours.parameters())
    theirs_shapes = sorted(tuple(p.shape) for p in theirs.parameters())
    assert ours_shapes == theirs_shapes


@pytest.mark.parametrize("mixer, params_m, gflops", [("dwconv", 24, 3.8), ("dynamic_dwconv", 51, 3.8)])
def test_dwnet_t_and_dynamic_dwnet_t_match_the_published_cost(mixer, params_m, gflops):
    arch = swin_t_arch(mixer)
    net = MixerNet.from_arch(arch, DEPLOYMENT)
    params, flops = num_params(net), fvcore_flops(net, 224, 3)
    assert arch_cost(arch, DEPLOYMENT).params == params
    assert arch_cost(arch, DEPLOYMENT).flops == flops
    # the papers round to 2 significant figures
    assert params / 1e6 == pytest.approx(params_m, rel=0.02)
    assert flops / 1e9 == pytest.approx(gflops, rel=0.02)


def covering_archs(space: SearchSpace, rng: random.Random) -> list[Arch]:
    """Under every pattern of pools, each stage takes each of its (mixer, kernel) pairs once (depths drawn by
    ``rng``): every stage meets every mixer and kernel at every map size its pools can lead to."""
    stages = space.to_dict()["stages"]
    pairs = [[(m, k) for m in s["mixers"] for k in s["kernels"]] for s in stages]
    archs = []
    for pools in itertools.product(*(s["pools"] for s in stages)):
        for i in range(max(len(p) for p in pairs)):
            archs.append(Arch.from_dict({"stages": [
                {"mixer": pairs[j][i % len(pairs[j])][0], "kernel": pairs[j][i % len(pairs[j])][1],
                 "depth": rng.choice(s["depths"]), "pool": pools[j]} for j, s in enumerate(stages)]}))
    return archs


@pytest.mark.slow
def test_analytic_cost_agrees_with_fvcore_on_every_stage_choice_and_map_size(space):
    """fvcore costs about one forward pass (its trace), so the covering set runs at 112 px / patch 4 (maps 28, 14,
    7, 4: window padding, window clamping and odd-size patch merging all occur); random archs then run at the
    deployment resolution (narrow, then full width). It replaced 184 random archs at 112 px, which met the rarer
    combinations by chance only (a given mixer and kernel in a last stage at map 28: one arch in 72), in twice the
    time."""
    rng = random.Random(0)
    mid = covering_archs(space, rng)
    assert len(mid) == 8 * 9  # 8 patterns of pools, 9 (mixer, kernel) pairs
    deployment = []
    for settings, n in ((NARROW_DEPLOYMENT, 12), (DEPLOYMENT, 4)):
        for _ in range(n):
            arch = space.sample(rng)
            while arch_cost(arch, settings).flops > 8e9:  # keep the forward passes short; same rules
                arch = space.sample(rng)
            deployment.append((settings, arch))
    worst = 0.0
    for settings, arch in [(MID, a) for a in mid] + deployment:
        net = MixerNet.from_arch(arch, settings)
        measured = fvcore_flops(net, settings.img_size, settings.in_chans)
        cost = arch_cost(arch, settings)
        assert cost.params == num_params(net), arch.key()
        assert cost.flops == measured, arch.key()  # exact: the same counting rules, no tolerance
        worst = max(worst, abs(cost.flops - measured) / measured)
    print(f"\nanalytic vs fvcore FLOPs on {len(mid) + len(deployment)} archs: largest relative error {worst:.2e}")
    assert worst == 0


@pytest.mark.slow
def test_extended_space_costs_agree_with_fvcore():
    """The extended space's operators (issue #12) follow the same rules: 60 random archs at 112 px,
    8 at the deployment resolution (narrow), 4 at the small setting; exact."""
    extended = SearchSpace.builtin("extended")
    rng = random.Random(12)
    count = 0
    for settings, n in ((MID, 60), (NARROW_DEPLOYMENT, 8), (TINY, 4)):
        for _ in range(n):
            arch = extended.sample(rng)
            while arch_cost(arch, settings).flops > 8e9:
                arch = extended.sample(rng)
            net = MixerNet.from_arch(arch, settings)
            cost = arch_cost(arch, settings)
            assert cost.params == num_params(net), arch.key()
            assert cost.flops == fvcore_flops(net, settings.img_size, settings.in_chans), arch.key()
            count += 1
    assert count == 72


def test_small_setting_costs_match_fvcore(space):
    """At the small setting windows are clamped to the map: the analytic rule must follow."""
    rng = random.Random(1)
    for _ in range(10):
        arch = space.sample(rng)
        net = MixerNet.from_arch(arch, TINY)
        assert arch_cost(arch, TINY).flops == fvcore_flops(net, TINY.img_size, TINY.in_chans)


# 4,096 archs: few enough to enumerate, with every kind of choice and both resolutions at every stage
ENUMERABLE = SearchSpace.from_dict({"stages": [
    {"mixers": ["window_attention", "dwconv"], "kernels": [3, 7], "depths": [1, 2], "pools": [1]},
    {"mixers": ["window_attention", "dynamic_dwconv"], "kernels": [5, 7], "depths": [1], "pools": [1, 2]},
    {"mixers": ["dwconv", "window_attention"], "kernels": [3], "depths": [2, 4], "pools": [1, 2]},
    {"mixers": ["dynamic_dwconv", "window_attention"], "kernels": [3, 5], "depths": [1], "pools": [1, 2]}]})


def test_extreme_archs_are_exact_on_an_enumerable_space():
    small = ENUMERABLE
    flops = {a: arch_cost(a, DEPLOYMENT).flops for a in small}
    cheapest, dearest = extreme_archs(small, DEPLOYMENT)
    assert flops[cheapest] == min(flops.values())
    assert flops[dearest] == max(flops.values())


def test_dearest_arch_within_a_budget_is_exact_on_an_enumerable_space():
    flops = {a: arch_cost(a, DEPLOYMENT).flops for a in ENUMERABLE}
    levels = sorted(set(flops.values()))
    budgets = levels[::97] + [levels[0] - 1, levels[-1], levels[-1] * 2, (levels[10] + levels[11]) / 2]
    for budget in budgets:
        best = dearest_arch_within(ENUMERABLE, DEPLOYMENT, budget)
        fitting = [f for f in levels if f <= budget]
        if not fitting:
            assert best is None
        else:
            assert flops[best] == fitting[-1], budget
    assert dearest_arch_within(ENUMERABLE, DEPLOYMENT, levels[-1]) == extreme_archs(ENUMERABLE, DEPLOYMENT)[1]

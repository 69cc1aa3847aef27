"""The supernet: every path's extraction equals the active path; validation; seeded samplers."""
import itertools
import random

import pytest
import torch

from searchspace import DEPLOYMENT, Arch, SearchSpace, SpaceError, StageChoice, arch_cost
from supernet import make_path_sampler
from tests.helpers import assert_random_paths_extract_exactly, briefly_trained_supernet


@pytest.fixture(scope="module")
def trained_supernet():
    return briefly_trained_supernet(SearchSpace.default())


@pytest.mark.parametrize("mixer, kernel", itertools.product(("window_attention", "dwconv", "dynamic_dwconv"), (3, 5, 7)))
@pytest.mark.parametrize("pools", [(1, 2, 2, 2), (1, 1, 1, 1), (1, 2, 1, 2)])
def test_extraction_equals_the_active_path(trained_supernet, mixer, kernel, pools):
    arch = Arch(tuple(StageChoice(mixer, kernel, d, p) for d, p in zip((2, 2, 4, 2), pools)))
    trained_supernet.set_active(arch)
    sub = trained_supernet.extract(arch).eval()
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(sub(x), trained_supernet(x), rtol=0, atol=1e-5)
    # the extracted network is plain: only the active choice's weights, at their own size
    assert set(sub.stages[0].blocks[0].mixers) == {mixer}
    assert len(sub.stages[2].blocks) == 4


def test_extraction_on_mixed_random_archs(trained_supernet):
    assert_random_paths_extract_exactly(trained_supernet, seed=5, count=10)


def test_extracted_weights_are_the_centre_of_the_shared_ones(trained_supernet):
    arch = Arch(tuple(StageChoice("dwconv", 3, d, p) for d, p in zip((1, 1, 2, 1), (1, 2, 2, 2))))
    sub = trained_supernet.extract(arch)
    big = trained_supernet.stages[1].blocks[0].mixers["dwconv"].dw_weight
    small = sub.stages[1].blocks[0].mixers["dwconv"].dw_weight
    assert small.shape[-1] == 3 and torch.equal(small, big[:, :, 2:5, 2:5])
    # the MLP is shared by all mixers of a block
    block = trained_supernet.stages[1].blocks[0]
    assert sum(1 for n, _ in block.named_children() if n == "mlp") == 1


def test_set_active_validates_and_forward_does_not_change_it(trained_supernet):
    bad = Arch(tuple(StageChoice("dwconv", 9, 1, 1) for _ in range(4)))
    before = trained_supernet.active_arch
    with pytest.raises(SpaceError, match="stage 1: field 'kernel': 9 is not one of"):
        trained_supernet.set_active(bad)
    assert trained_supernet.active_arch == before
    with pytest.raises(SpaceError):
        trained_supernet.extract(bad)
    state = {k: v.clone() for k, v in trained_supernet.state_dict().items()}
    with torch.no_grad():
        trained_supernet(torch.randn(2, 1, 32, 32))
    assert trained_supernet.active_arch == before
    assert all(torch.equal(state[k], v) for k, v in trained_supernet.state_dict().items())


def test_supernet_weights_cover_every_choice(trained_supernet):
    block = trained_supernet.stages[2].blocks[7]
    assert set(block.mixers) == {"window_attention", "dwconv", "dynamic_dwconv"}
    assert block.mixers["window_attention"].relative_position_bias_table.shape[0] == 13 * 13
    assert set(trained_supernet.stages[3].transitions) == {"pool1", "pool2"}


@pytest.mark.parametrize("name", ["spos", "sandwich"])
def test_path_samplers_are_seeded_and_resumable(name):
    space = SearchSpace.default()
    a, b = make_path_sampler(name, space, 7), make_path_sampler(name, space, 7)
    assert [a.paths() for _ in range(5)] == [b.paths() for _ in range(5)]
    state = a.state_dict()
    expected = [a.paths() for _ in range(3)]
    c = make_path_sampler(name, space, 0)
    c.load_state_dict(state)
    assert [c.paths() for _ in range(3)] == expected
    other = make_path_sampler(name, space, 8)
    assert [other.paths() for _ in range(5)] != [make_path_sampler(name, space, 7).paths() for _ in range(5)]


@pytest.mark.parametrize("budget", [None, 4.5e9, 2.5e9])
def test_a_path_budget_filters_without_changing_the_draws(budget):
    """The random paths are the space's draws from the seeded RNG, those over the budget skipped: the RNG is asked
    exactly as before the budget was an object, so a supernet trained again draws the same paths."""
    space = SearchSpace.default()
    rng, expected = random.Random(7), []
    while len(expected) < 50:
        arch = space.sample(rng)
        if budget is None or arch_cost(arch, DEPLOYMENT).flops <= budget:
            expected.append(arch)
    sampler = make_path_sampler("spos", space, 7, budget)
    assert [sampler.paths()[0] for _ in range(50)] == expected
    assert sampler.rng.getstate() == rng.getstate() and sampler.max_flops == budget


def test_sandwich_trains_the_largest_and_the_smallest():
    space = SearchSpace.default()
    paths = make_path_sampler("sandwich", space, 0).paths()
    assert len(paths) == 3
    assert paths[0].key() == "wa5x2p1-wa5x2p1-wa5x8p1-wa5x2p1"  # dearest at the deployment setting
    assert paths[1].key() == "dw3x1p1-dw3x1p2-dw3x2p2-dw3x1p2"  # cheapest
    with pytest.raises(ValueError, match="unknown path sampler"):
        make_path_sampler("greedy", space, 0)


def test_sandwich_under_a_path_budget_trains_the_dearest_arch_within_it():
    space, budget = SearchSpace.default(), 4.5e9
    sampler = make_path_sampler("sandwich", space, 0, budget)
    steps = [sampler.paths() for _ in range(200)]
    largest = steps[0][0]
    assert all(step[0] == largest for step in steps)
    assert 4.49e9 < arch_cost(largest, DEPLOYMENT).flops <= budget  # the budget's edge
    assert steps[0][1].key() == "dw3x1p1-dw3x1p2-dw3x2p2-dw3x1p2"  # the cheapest arch of the space
    randoms = [arch for step in steps for arch in step[2:]]
    assert all(arch_cost(a, DEPLOYMENT).flops <= budget for a in randoms)
    assert len({a.key() for a in randoms}) > 150  # random ones, none dearer than the largest
    assert max(arch_cost(a, DEPLOYMENT).flops for a in randoms) <= arch_cost(largest, DEPLOYMENT).flops
    with pytest.raises(ValueError, match="below the cheapest arch"):
        make_path_sampler("sandwich", space, 0, 1e6)

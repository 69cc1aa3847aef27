"""Which archs a ranking check trains: the stated rule over the budget band, and a file of archs."""
import json

import pytest

from nas.errors import UserError
from nas.ranking.arch_sets import band_archs, read_archs_file
from searchspace import DEPLOYMENT, Budget, SearchSpace, SpaceError, arch_cost, extreme_archs


def test_band_archs_spread_over_the_archs_within_the_budget_by_a_seeded_rule():
    space = SearchSpace.builtin("default")
    archs = band_archs(space, Budget(flops=4.5e9), 16, draws=500, seed=3)
    flops = [arch_cost(a, DEPLOYMENT).flops for a in archs]
    assert len({a.key() for a in archs}) == 16 and all(space.validate(a) for a in archs)
    assert flops == sorted(flops) and flops[-1] <= 4.5e9
    assert flops[-1] - flops[0] > 2e9  # spread over the band, not bunched at one end
    assert band_archs(space, Budget(flops=4.5e9), 16, draws=500, seed=3) == archs  # the seed alone decides
    assert band_archs(space, Budget(flops=4.5e9), 16, draws=500, seed=4) != archs
    assert band_archs(space, Budget(flops=4.5e9), 2, draws=500, seed=3) == [archs[0], archs[-1]]  # the cheapest and the dearest


def test_band_archs_refuses_what_it_cannot_draw():
    space = SearchSpace.builtin("default")
    cheapest = arch_cost(extreme_archs(space, DEPLOYMENT)[0], DEPLOYMENT).flops
    for budget, count, error, message in ((cheapest / 2, 4, SpaceError, "below the cheapest arch"),
                                          (4.5e9, 1, UserError, "at least 2 archs"),
                                          (cheapest, 3, UserError, "only [01] distinct archs within")):
        with pytest.raises(error, match=message):
            band_archs(space, Budget(flops=budget), count, draws=200)


def test_read_archs_file_takes_a_ranking_json_and_refuses_a_bad_list(tmp_path):
    space = SearchSpace.builtin("default")
    a, b = band_archs(space, Budget(flops=4.5e9), 2, draws=200)
    ranking = tmp_path / "ranking.json"  # a check's summary: each arch with its figures beside its stages
    ranking.write_text(json.dumps({"archs": [{**a.to_dict(), "inherited_top1": 0.5}, {**b.to_dict(), "flops": 1}]}))
    assert read_archs_file(ranking, space) == [a, b]
    outside = b.to_dict()
    outside["stages"][3]["kernel"] = 9
    for content, error, message in (({"archs": [a.to_dict()]}, UserError, "at least 2 arch objects"),
                                    ([a.to_dict(), b.to_dict()], UserError, "an 'archs' list"),
                                    ({"archs": [a.to_dict(), a.to_dict()]}, UserError, "the same arch is listed twice"),
                                    ({"archs": [a.to_dict(), outside]}, SpaceError, "arch 2: stage 4: field 'kernel'")):
        path = tmp_path / "archs.json"
        path.write_text(json.dumps(content))
        with pytest.raises(error, match=message):
            read_archs_file(path, space)

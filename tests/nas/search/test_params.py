"""The search's parameters: an arch and its parameters name each other; the seed models as first points."""
import random

from nas.search.params import arch_from_params, params_of, seed_model_points
from searchspace import PUBLISHED_MODELS, SearchSpace, published_arch


def test_params_name_the_arch_they_come_from_in_every_builtin_space():
    for name in ("default", "extended", "tiny"):
        space = SearchSpace.builtin(name)
        rng = random.Random(0)
        for _ in range(50):
            arch = space.sample(rng)
            assert arch_from_params(params_of(arch, space), space.num_stages) == arch


def test_the_seed_models_are_first_points_where_the_space_holds_them():
    points, outside = seed_model_points(SearchSpace.default())
    assert outside == []
    assert [arch_from_params(p, 4) for p in points] == [published_arch(m) for m in PUBLISHED_MODELS.values()]
    points, outside = seed_model_points(SearchSpace.builtin("tiny"))  # kernel 3 only: none of them
    assert points == [] and outside == list(PUBLISHED_MODELS)

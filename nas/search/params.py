"""The search's parameters: one categorical choice per stage field, named ``s<stage>_<field>``; an arch from them."""
from __future__ import annotations

from typing import Any

from searchspace import PUBLISHED_MODELS, Arch, SearchSpace, StageChoice, published_arch
from searchspace.arch import DEFAULT_POOL_OP
from searchspace.errors import SpaceError
from searchspace.space import StageSpace

FIELDS = ("mixer", "kernel", "depth", "pool")
POOL_OP = "pool_op"  # a parameter only for stages whose space offers a pool op other than patch merging


def param_name(stage: int, field_name: str) -> str:
    return f"s{stage + 1}_{field_name}"


def stage_fields(stage: StageSpace) -> tuple[str, ...]:
    """The search parameters of one stage: the default space's four, plus the pool op where offered
    (so a default-space search asks exactly what it always asked, in the same order)."""
    return FIELDS + ((POOL_OP,) if stage.offers_pool_ops else ())


def arch_from_params(params: dict[str, Any], num_stages: int) -> Arch:
    stages = []
    for i in range(num_stages):
        mixer, kernel, depth, pool = (params[param_name(i, f)] for f in FIELDS)
        # The pool op is sampled independently of the ratio; at pool 1 it has no meaning.
        pool_op = params.get(param_name(i, POOL_OP), DEFAULT_POOL_OP) if pool == 2 else DEFAULT_POOL_OP
        stages.append(StageChoice(mixer, kernel, depth, pool, pool_op))
    return Arch(tuple(stages))


def tune_search_space(space: SearchSpace) -> dict:
    from ray import tune

    return {param_name(i, f): tune.choice(list(stage.choices(f))) for i, stage in enumerate(space.stages)
            for f in stage_fields(stage)}


def params_of(arch: Arch, space: SearchSpace) -> dict[str, Any]:
    """The search parameters that name ``arch`` (a point of ``space``): ``arch_from_params``'s inverse."""
    return {param_name(i, f): getattr(choice, f) for i, (choice, stage) in enumerate(zip(arch.stages, space.stages))
            for f in stage_fields(stage)}


def seed_model_points(space: SearchSpace) -> tuple[list[dict[str, Any]], list[str]]:
    """The seed papers' models that are points of ``space``, as search parameters, and the names of those that are
    not."""
    points, outside = [], []
    for name, mixer in PUBLISHED_MODELS.items():
        try:
            points.append(params_of(space.validate(published_arch(mixer), source=name), space))
        except SpaceError:
            outside.append(name)
    return points, outside

import json
import random

import pytest

from searchspace import Arch, SearchSpace, SpaceError, load_arch_file, save_arch_file
from tests.helpers import swin_t_arch


def test_default_space_has_the_published_choices(space):
    assert space.num_stages == 4
    for stage in space.stages:
        assert stage.mixers == ("window_attention", "dwconv", "dynamic_dwconv")
        assert stage.kernels == (3, 5, 7)
    assert [s.depths for s in space.stages] == [(1, 2), (1, 2), (2, 4, 6, 8), (1, 2)]
    assert [s.pools for s in space.stages] == [(1,), (1, 2), (1, 2), (1, 2)]
    assert space.size() == 18 * 36 * 72 * 36


def test_size_matches_enumeration_on_a_small_space():
    small = SearchSpace.from_dict({"stages": [
        {"mixers": ["dwconv"], "kernels": [3, 5], "depths": [1], "pools": [1]},
        {"mixers": ["dwconv", "window_attention"], "kernels": [3], "depths": [1, 2], "pools": [1, 2]}]})
    archs = list(small)
    assert len(archs) == small.size() == 2 * 8 and len(set(archs)) == len(archs)


def test_sampling_is_seeded_and_valid(space):
    a = [space.sample(random.Random(3)) for _ in range(2)]
    assert a[0] == a[1]
    rng = random.Random(0)
    samples = [space.sample(rng) for _ in range(200)]
    for arch in samples:
        space.validate(arch)
    assert len({s.key() for s in samples}) > 190
    assert {s.stages[2].mixer for s in samples} == set(space.stages[2].mixers)


def test_arch_file_round_trip_keeps_extra_keys(tmp_path):
    path = tmp_path / "a.json"
    save_arch_file(path, swin_t_arch(), name="swin-t", metrics={"top1": 0.5})
    arch, extra = load_arch_file(path)
    assert arch == swin_t_arch() and extra == {"name": "swin-t", "metrics": {"top1": 0.5}}
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["stages"].pop(), "expected 4 stages, got 3"),
    (lambda d: d["stages"][2].update(kernel=9), "stage 3: field 'kernel': 9 is not one of [3, 5, 7]"),
    (lambda d: d["stages"][1].update(mixer="conv"), "stage 2: field 'mixer': 'conv' is not one of"),
    (lambda d: d["stages"][0].update(pool=2), "stage 1: field 'pool': 2 is not one of [1]"),
    (lambda d: d["stages"][2].update(depth=3), "stage 3: field 'depth': 3 is not one of [2, 4, 6, 8]"),
])
def test_choice_outside_the_space_names_stage_and_field(space, mutate, message):
    data = swin_t_arch().to_dict()
    mutate(data)
    with pytest.raises(SpaceError, match=None) as err:
        space.validate(Arch.from_dict(data, source="x.json"), source="x.json")
    assert message in str(err.value) and str(err.value).startswith("x.json: ")


@pytest.mark.parametrize("stage, message", [
    ({"mixer": "dwconv", "kernel": "7", "depth": 2, "pool": 1}, "stage 1: field 'kernel' must be int, got \"7\""),
    ({"mixer": "dwconv", "kernel": 7, "depth": True, "pool": 1}, "stage 1: field 'depth' must be int, got true"),
    ({"mixer": "dwconv", "kernel": 7, "depth": 2}, "stage 1: missing field 'pool'"),
    ({"mixer": "dwconv", "kernel": 7, "depth": 2, "pool": 1, "width": 3}, "stage 1: unknown field 'width'"),
])
def test_wrong_types_are_named(stage, message):
    with pytest.raises(SpaceError) as err:
        Arch.from_dict({"stages": [stage]}, source="f.json")
    assert message in str(err.value)


def test_bad_files(tmp_path):
    with pytest.raises(SpaceError, match="no such file"):
        load_arch_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{\"stages\": [")
    with pytest.raises(SpaceError, match="invalid JSON at line 1"):
        load_arch_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(SpaceError, match="'stages' list"):
        load_arch_file(bad)


def test_a_user_space_file_adds_a_kernel_size_locally(tmp_path):
    data = SearchSpace.default().to_dict()
    for stage in data["stages"]:
        stage["kernels"].append(9)
    path = tmp_path / "space.json"
    path.write_text(json.dumps(data))
    space = SearchSpace.from_file(path)
    assert space.stages[0].kernels == (3, 5, 7, 9)
    data["stages"][0]["mixers"] = ["mlp_mixer"]
    path.write_text(json.dumps(data))
    with pytest.raises(SpaceError, match="stage 1: unknown mixer 'mlp_mixer'"):
        SearchSpace.from_file(path)


# --- the extended space and the pool op (issue #12) ---------------------------------------------

def test_extended_space_and_its_size_by_enumeration():
    extended = SearchSpace.builtin("extended")
    assert SearchSpace.load("extended") == extended and SearchSpace.load(None) == SearchSpace.default()
    assert all(len(s.mixers) == 5 for s in extended.stages)
    # pool 2 has two ops, pool 1 one: (1 + 2) entries in stages 2-4
    assert extended.size() == 30 * (15 * 2 * 3) * (15 * 4 * 3) * (15 * 2 * 3)
    small = SearchSpace.from_dict({"stages": [
        {"mixers": ["dwconv"], "kernels": [3], "depths": [1], "pools": [1]},
        {"mixers": ["dwconv", "linear_angular"], "kernels": [3], "depths": [1], "pools": [1, 2],
         "pool_ops": ["merge", "maxpool"]}]})
    archs = list(small)
    assert len(archs) == small.size() == 2 * 3 and len(set(archs)) == len(archs)
    assert {a.stages[1].pool_op for a in archs if a.stages[1].pool == 1} == {"merge"}


def test_default_space_draws_are_unchanged_by_the_pool_op():
    """check-ranking's arch rule and every seeded benchmark draw with ``sample``: a default-space
    draw must consume the RNG exactly as before the pool op existed."""
    space = SearchSpace.default()
    mine, reference = random.Random(0), random.Random(0)
    for _ in range(50):
        arch = space.sample(mine)
        old = [(reference.choice(s.mixers), reference.choice(s.kernels), reference.choice(s.depths),
                reference.choice(s.pools)) for s in space.stages]
        assert [(c.mixer, c.kernel, c.depth, c.pool) for c in arch.stages] == old
        assert all(c.pool_op == "merge" for c in arch.stages)


def test_pool_op_in_arch_files(tmp_path):
    data = swin_t_arch().to_dict()
    assert all("pool_op" not in s for s in data["stages"]), "merge is not written: old files keep their bytes"
    data["stages"][2]["pool_op"] = "maxpool"
    arch = Arch.from_dict(data)
    assert arch.stages[2].pool_op == "maxpool" and arch.stages[1].pool_op == "merge"
    assert arch.key().split("-")[2] == "wa7x6p2mp" and arch.to_dict() == data
    path = tmp_path / "a.json"
    save_arch_file(path, arch)
    assert load_arch_file(path)[0] == arch
    with pytest.raises(SpaceError, match="stage 3: field 'pool_op': 'maxpool' with pool 2 is not one of"):
        SearchSpace.default().validate(arch)
    SearchSpace.builtin("extended").validate(arch)


@pytest.mark.parametrize("stage, message", [
    ({"mixer": "dwconv", "kernel": 3, "depth": 1, "pool": 1, "pool_op": "maxpool"}, "pool_op 'maxpool' needs pool 2"),
    ({"mixer": "dwconv", "kernel": 3, "depth": 1, "pool": 2, "pool_op": "avg"}, "'avg' is not one of ['merge', 'maxpool']"),
    ({"mixer": "dwconv", "kernel": 3, "depth": 1, "pool": 2, "pool_op": 2}, "field 'pool_op' must be str"),
])
def test_bad_pool_ops_are_named(stage, message):
    with pytest.raises(SpaceError) as err:
        Arch.from_dict({"stages": [stage]}, source="f.json")
    assert message in str(err.value)


@pytest.mark.parametrize("stage, message", [
    ({"pool_ops": ["merge", "avg"]}, "'pool_ops' must be a non-empty list"),
    ({"pool_ops": []}, "'pool_ops' must be a non-empty list"),
    ({"pool_op": ["maxpool"]}, "unknown field 'pool_op'"),
])
def test_bad_space_pool_ops_are_named(stage, message):
    base = {"mixers": ["dwconv"], "kernels": [3], "depths": [1], "pools": [1, 2]}
    with pytest.raises(SpaceError) as err:
        SearchSpace.from_dict({"stages": [{"mixers": ["dwconv"], "kernels": [3], "depths": [1], "pools": [1]},
                                          {**base, **stage}]}, source="s.json")
    assert message in str(err.value)


def test_the_seed_models_are_points_of_the_default_space_at_their_published_cost():
    from searchspace import DEPLOYMENT, PUBLISHED_MODELS, arch_cost, published_arch

    space = SearchSpace.default()
    keys = {name: space.validate(published_arch(mixer)).key() for name, mixer in PUBLISHED_MODELS.items()}
    assert keys == {"Swin-T": "wa7x2p1-wa7x2p2-wa7x6p2-wa7x2p2", "DWNet-T": "dw7x2p1-dw7x2p2-dw7x6p2-dw7x2p2",
                    "dynamic DWNet-T": "dd7x2p1-dd7x2p2-dd7x6p2-dd7x2p2"}
    assert arch_cost(published_arch("window_attention"), DEPLOYMENT).flops == 4_509_194_496  # timm's Swin-T

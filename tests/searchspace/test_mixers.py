"""The mixer registry: every table of mixer names is a view of it, and every mixer has all its parts."""
import json

import pytest
import torch

import supernet
from searchspace import DEPLOYMENT, KNOWN_MIXERS, MIXER_SPECS, Cost, MixerSpec, SearchSpace, SpaceError, mixer_spec
from searchspace.arch import MIXER_SHORT
from searchspace.cost import MIXER_COSTS
from searchspace.mixers import register
from searchspace.space import CONV_MIXERS


def test_the_old_tables_are_views_of_the_registry_and_unchanged():
    names = ("window_attention", "dwconv", "dynamic_dwconv", "linear_angular", "inhomogeneous_dwconv")
    assert tuple(MIXER_SPECS) == KNOWN_MIXERS == names
    assert CONV_MIXERS == names[1:]
    assert MIXER_SHORT == {"window_attention": "wa", "dwconv": "dw", "dynamic_dwconv": "dd",
                           "linear_angular": "la", "inhomogeneous_dwconv": "id"}
    assert MIXER_COSTS == {name: spec.cost for name, spec in MIXER_SPECS.items()}
    assert [name for name, spec in MIXER_SPECS.items() if spec.shiftable] == ["window_attention"]


@pytest.mark.parametrize("name", list(MIXER_SPECS))
def test_every_mixer_has_a_cost_rule_a_unique_short_key_and_a_module(name):
    spec = mixer_spec(name)
    assert isinstance(spec, MixerSpec) and spec.name == name
    dim, kernel, res = 96, 7 if not spec.conv else 5, 56
    cost = spec.cost(dim, kernel, res, DEPLOYMENT)
    assert isinstance(cost, Cost) and cost.flops > 0 and cost.params > 0
    assert [s.short for s in MIXER_SPECS.values()].count(spec.short) == 1
    assert supernet.MIXERS[name].__name__.endswith("Mixer")
    assert list(supernet.MIXERS) == list(MIXER_SPECS)  # no module without a spec, in the registry's order


@pytest.mark.parametrize("name", list(MIXER_SPECS))
def test_a_spec_says_what_its_module_does(name):
    """``conv``: the module refuses even kernels; ``shiftable``: its output depends on the shift flag."""
    spec, module = mixer_spec(name), supernet.MIXERS[name]
    if spec.conv:
        with pytest.raises(ValueError, match="odd"):
            module(32, 1, 4)
    torch.manual_seed(0)
    mixer = module(32, 1, 3).eval()
    x = torch.randn(1, 8, 8, 32)
    with torch.no_grad():
        if not mixer(x, 3, False).abs().sum() > 0:  # a branch that starts as identity: give it a scale
            mixer.norm_out.weight.fill_(1.0)
        shifted, unshifted = mixer(x, 3, True), mixer(x, 3, False)
    assert (not torch.equal(shifted, unshifted)) == spec.shiftable


def test_a_space_file_naming_an_unknown_mixer_is_refused_with_the_registered_names(tmp_path):
    data = SearchSpace.default().to_dict()
    data["stages"][1]["mixers"] = ["dwconv", "mlp_mixer"]
    path = tmp_path / "space.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpaceError) as info:
        SearchSpace.from_file(path)
    assert str(info.value) == f"{path}: stage 2: unknown mixer 'mlp_mixer' (known: {', '.join(MIXER_SPECS)})"
    with pytest.raises(SpaceError, match=r"unknown mixer 'mlp_mixer' \(known: window_attention, dwconv, "):
        mixer_spec("mlp_mixer")


def test_a_mixer_is_registered_once_by_name_and_by_short_key():
    before = dict(MIXER_SPECS)
    rule = MIXER_SPECS["dwconv"].cost
    for spec, taken in ((MixerSpec("dwconv", "zz", rule, conv=True, shiftable=False), "name 'dwconv'"),
                        (MixerSpec("new_conv", "dw", rule, conv=True, shiftable=False), "short 'dw'")):
        fresh = MixerSpec("fresh", "fr", rule, conv=True, shiftable=False)
        with pytest.raises(ValueError, match=f"{taken} is taken"):
            register(fresh, spec)
        assert MIXER_SPECS == before  # nothing added, not even the fresh spec before it

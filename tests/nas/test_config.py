"""nas.config names choices that other modules implement (so that a command line is checked without torch):
each name must be one its implementation accepts, and none missing."""
import optuna
import pytest

from nas.config import AMP_MODES, PATH_SAMPLERS, SEARCH_SAMPLERS, TrainConfig
from nas.engine import AMP_DTYPES
from nas.errors import UserError
from nas.search import make_optuna_sampler
from searchspace import SearchSpace
from supernet import SAMPLERS, PathSampler, make_path_sampler


def test_path_samplers_are_the_supernets():
    assert PATH_SAMPLERS == SAMPLERS
    for name in PATH_SAMPLERS:
        assert isinstance(make_path_sampler(name, SearchSpace.default(), seed=0), PathSampler)


def test_search_samplers_are_optuna_samplers():
    for name in SEARCH_SAMPLERS:
        assert isinstance(make_optuna_sampler(name, seed=0, trials=8), optuna.samplers.BaseSampler)
    with pytest.raises(UserError, match="cmaes"):
        make_optuna_sampler("cmaes", seed=0, trials=8)


def test_amp_modes_are_the_engines():
    assert AMP_MODES == tuple(AMP_DTYPES)
    for mode in AMP_MODES:
        assert TrainConfig(amp=mode).amp == mode
    assert TrainConfig(amp="off").amp is False
    with pytest.raises(UserError, match="--amp fp8"):
        TrainConfig(amp="fp8")

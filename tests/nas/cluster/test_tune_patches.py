"""The Ray Tune patches hold only inside the experiment that asks for them."""
import os

import pytest

from nas.cluster.tune_patches import patched_tune


def tune_internals():
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager
    from ray.tune.execution.tune_controller import TuneController

    return (_ExperimentCheckpointManager.sync_up_experiment_state, TuneController._process_trial_failure,
            TuneController.__init__)


def test_every_patch_is_undone_after_the_experiment_even_one_that_raised(monkeypatch):
    monkeypatch.delenv("TUNE_GLOBAL_CHECKPOINT_S", raising=False)
    before = tune_internals()
    with pytest.raises(KeyboardInterrupt):
        with patched_tune(save_every_trial_event=True, keep_idle_actors=True):
            inside = tune_internals()
            assert all(a is not b for a, b in zip(before, inside))
            assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == "0"
            raise KeyboardInterrupt  # Ctrl-C mid-search
    assert tune_internals() == before and "TUNE_GLOBAL_CHECKPOINT_S" not in os.environ


def test_a_checkpoint_period_the_user_set_is_kept(monkeypatch):
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "30")
    before = tune_internals()
    with patched_tune(save_every_trial_event=True):
        assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == "30"
        assert tune_internals()[2] is before[2]  # no idle actors asked for: Tune's own __init__
    assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == "30"

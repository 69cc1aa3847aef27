"""Three changes to Ray Tune's behaviour that its public API (callbacks, ``TuneConfig``, ``reuse_actors``,
``FailureConfig``) cannot make, each a context manager that holds only while the experiment that needs it runs
(:func:`patched_tune`) and is undone after it.

Ray is pinned to 2.60.*; ``tests/nas/search/test_driver.py`` checks that what these wrap still exists.
"""
from __future__ import annotations

import contextlib
import logging
import os

logger = logging.getLogger(__name__)


def _trial_table(controller) -> tuple | None:
    """What a saved experiment state must reflect: each trial's id, status and reported iterations (a Ray Train
    trial's checkpoint comes with a report). None if ``controller`` is not Tune's (a caller of the manager's own)."""
    get_trials = getattr(controller, "get_trials", None)
    if get_trials is None:
        return None
    # run_metadata's plain dict: the last_result property may block on the actor's default result
    return tuple((t.trial_id, t.status, t.run_metadata.last_result.get("training_iteration")) for t in get_trials())


@contextlib.contextmanager
def save_tune_state_on_trial_events(on_saved=None):
    """Within this block, Ray Tune saves its experiment state when a trial changed, and only after its previous copy
    finished; ``on_saved(staging_folder)``, when given, runs after each save, before Tune copies it.

    Tune saves the experiment state (trial table, searcher state, each through temp files) into its driver staging
    folder and then copies that folder to the run folder in a background thread without waiting; the next save
    can start while the last copy runs. A temp file renamed mid-copy prints a FileNotFoundError traceback, and a
    state file rewritten mid-copy can reach the run folder half-written, which a resume would read.
    So each save first waits for the last copy.

    The search saves after every trial event (TUNE_GLOBAL_CHECKPOINT_S=0: a killed search loses no finished trial),
    but Tune's loop offers a save at every step, about ten a second, trial event or not: each pickled the Optuna
    study and copied the folder, a quarter of a core on a 2-core machine, taken from the trials. A save now happens
    only when a trial was added, started, reported or ended since the last one (or when Tune forces one: at the end,
    on Ctrl-C).
    """
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    original = _ExperimentCheckpointManager.sync_up_experiment_state

    def sync_up_experiment_state(self, save_fn, force: bool = False, wait: bool = False):
        table = _trial_table(getattr(save_fn, "__self__", None))
        if not force and table is not None and table == getattr(self, "_saved_trial_table", None):
            return None

        def save_after_last_sync() -> None:
            try:
                self._storage.syncer.wait()
            except (OSError, TimeoutError) as e:  # pyarrow's copy failed or hung: the sync after this save copies all
                logger.warning("the last copy of Tune's state to %s failed (%s); the next save copies it again",
                               self._storage.experiment_fs_path, e)
            save_fn()
            self._saved_trial_table = table  # (Tune's own throttle may skip a save: then this is not reached)
            if on_saved is not None:
                on_saved(self._storage.experiment_driver_staging_path)

        return original(self, save_after_last_sync, force=force, wait=wait)

    _ExperimentCheckpointManager.sync_up_experiment_state = sync_up_experiment_state
    try:
        yield
    finally:
        _ExperimentCheckpointManager.sync_up_experiment_state = original


@contextlib.contextmanager
def retry_trials_that_lost_their_actor_before_running():
    """Within this block, Ray Tune retries (within FailureConfig's max_failures) a trial that failed before it ran,
    and stops its idle trial actors whenever a trial fails.

    Why: when a node is lost, Tune retries its running trials, but the retry may be handed an idle actor (kept for
    reuse) that lived on that node, or placed there before Ray has marked the node dead. That attempt fails while the
    trial is still PENDING, and Tune retries only RUNNING trials: the trial ended as an error, one of the requested
    trials lost (seen in ``tests/cli/test_two_nodes.py``). Now a PENDING trial's failure counts as any other against
    max_failures, and no actor kept from before the failure is reused (the next trials start their own; a failure is
    rare, so the few seconds of imports it costs are too).
    """
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

    original = TuneController._process_trial_failure

    def _process_trial_failure(self, trial, exception):
        self._cleanup_cached_actors(force_all=True)
        if trial.status == Trial.PENDING:
            # As Tune does for a trial whose actor failed as it was created (_actor_failed): count it as running,
            # out of the staged ones (a trial handed an idle actor is not staged), so the handling below recovers it
            self._resetting_trials.discard(trial)
            self._set_trial_status(trial, Trial.RUNNING)
            if trial in self._staged_trials:
                self._unstage_trial_with_resources(trial)
        return original(self, trial, exception)

    TuneController._process_trial_failure = _process_trial_failure
    try:
        yield
    finally:
        TuneController._process_trial_failure = original


@contextlib.contextmanager
def reuse_idle_trial_actors():
    """Within this block, Ray Tune keeps every finished trial's actor until the next trial takes it (or the
    experiment ends), instead of at most one.

    Why: with the search's reproducible order, a free slot may wait for an older trial before the sampler can
    suggest the next arch. Tune then holds no trial to hand a finished actor to and keeps only one idle actor:
    the next one to finish was stopped, and a new process started for the next trial, which imports torch and
    timm again (about 10 s of CPU on a 2-core machine, taken from the running trial). In the default search that
    was a quarter of its trials. Every trial of a search needs the same resources, so an idle actor never holds
    what another trial could use. ``tests/nas/search/test_driver.py`` checks the actors are reused.
    """
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.utils.object_cache import _ObjectCache

    class IdleActors(_ObjectCache):
        def cache_object(self, key, obj) -> bool:
            self._cached_objects[key].append(obj)
            self._num_cached_objects += 1
            return True

        def flush_cached_objects(self, force_all: bool = False):
            if force_all:  # the experiment is over (or nothing more will come): stop them all
                yield from super().flush_cached_objects(force_all=True)

    original = TuneController.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._actor_cache = IdleActors(may_keep_one=True)

    TuneController.__init__ = __init__
    try:
        yield
    finally:
        TuneController.__init__ = original


@contextlib.contextmanager
def patched_tune(*, save_every_trial_event: bool = False, keep_idle_actors: bool = False, on_state_saved=None):
    """The patches an experiment of ours runs under, undone after it: a trial that lost its actor before it ran is
    retried, and each state save waits for the last copy. ``save_every_trial_event``: Tune saves its state at every
    trial event (``TUNE_GLOBAL_CHECKPOINT_S=0`` unless the user set it; a killed search loses no finished trial)
    instead of periodically. ``keep_idle_actors``: :func:`reuse_idle_trial_actors`. ``on_state_saved``: see
    :func:`save_tune_state_on_trial_events`."""
    with contextlib.ExitStack() as stack:
        if save_every_trial_event and "TUNE_GLOBAL_CHECKPOINT_S" not in os.environ:
            os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "0"
            stack.callback(os.environ.pop, "TUNE_GLOBAL_CHECKPOINT_S", None)
        stack.enter_context(save_tune_state_on_trial_events(on_state_saved))
        stack.enter_context(retry_trials_that_lost_their_actor_before_running())
        if keep_idle_actors:
            stack.enter_context(reuse_idle_trial_actors())
        yield

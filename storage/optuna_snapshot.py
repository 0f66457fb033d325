"""An Optuna storage that reads a study's trials once per batch of asks, not several times per ask.

Each ``study.ask()`` on Optuna's RDB storage reads the study's unfinished trials from the
database three or four times (the waiting-trial queue, the search space, the relative sample,
each independent parameter): with K trials in flight that is O(K) rows per read and O(K²) per
batch, which measured 38 ms of the worker's 64 ms per trial at K = 64 on a SQLite file.
`SnapshotStorage` wraps the process's storage for one worker and serves ``get_all_trials``
from a snapshot of each study taken at most ``max_age_s`` ago (one incremental read: Optuna's
own cache keeps the finished trials), overlaid with every trial this storage wrote since, so
the constant liar sees the batch the worker has just asked and the worker's own tells count at
once. Other workers' trials are at most ``max_age_s`` late, which a sampler asking a batch
ahead of its tells tolerates by design.

Every write goes straight to the database, in the call, as before: the database stays the
record and the only thing shared between workers. Only reads of the trial list are served from
memory; ``get_trial`` of a trial this storage did not create or pop is read afresh.

`SnapshotStorage.creating_from` lets the worker's ``Study.ask`` create its trial from a
template (params fixed for a retry, the ``mtl_trials`` row it belongs to as a system
attribute), in the same INSERT transaction as the trial itself: ``ask`` keeps doing all its
own bookkeeping, and no write is added per trial.
"""

from __future__ import annotations

import copy
import heapq
import threading
import time
from collections.abc import Callable, Container, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from optuna.study._frozen import FrozenStudy

#: Default longest age of a snapshot, in seconds.
DEFAULT_MAX_AGE_S = 1.0


class _Snapshot:
    """One study's trials by number (in number order), and which of them this storage wrote
    since it read them (served by `SnapshotStorage.get_trial` without a read).

    Reads filtered by state do not walk the whole history: the unfinished trials (a batch in
    flight) are indexed, and each filter's finished trials are kept until a trial finishes
    or a finished one changes (the pruner and the sampler filter 10,000 trials per report and
    per ask otherwise)."""

    def __init__(self, trials: list[FrozenTrial]) -> None:
        self.taken = time.monotonic()
        self.trials: dict[int, FrozenTrial] = {t.number: t for t in trials}
        self.numbers: dict[int, int] = {t._trial_id: t.number for t in trials}
        self.own: set[int] = set()  # numbers whose trial this storage wrote since the read
        # The backend reads in number order and numbers only grow: kept unless an added trial
        # has a number below one already held.
        self.ordered = True
        self.unfinished: set[int] = {t.number for t in trials if not t.state.is_finished()}
        self._finished_by_states: dict[frozenset[TrialState], list[FrozenTrial]] = {}

    def put(self, trial: FrozenTrial) -> None:
        """Hold ``trial`` under its number (new, or a changed copy of one held)."""
        held = self.trials.get(trial.number)
        if trial.state.is_finished() or (held is not None and held.state.is_finished()):
            self._finished_by_states.clear()
        if held is None and self.trials and trial.number < next(reversed(self.trials)):
            self.ordered = False
        self.trials[trial.number] = trial
        if trial.state.is_finished():
            self.unfinished.discard(trial.number)
        else:
            self.unfinished.add(trial.number)

    def in_states(self, states: Container[TrialState]) -> list[FrozenTrial]:
        """The trials in ``states``, in number order."""
        wanted = frozenset(s for s in TrialState if s in states)
        running = [
            self.trials[n] for n in sorted(self.unfinished) if self.trials[n].state in wanted
        ]
        finished = frozenset(s for s in wanted if s.is_finished())
        if not finished:
            return running
        cached = self._finished_by_states.get(finished)
        if cached is None:
            cached = [t for t in self._in_order() if t.state in finished]
            self._finished_by_states[finished] = cached
        if not running:
            return list(cached)
        return list(heapq.merge(cached, running, key=lambda t: t.number))

    def all(self) -> list[FrozenTrial]:
        return self._in_order()

    def _in_order(self) -> list[FrozenTrial]:
        trials = list(self.trials.values())
        if not self.ordered:
            trials.sort(key=lambda t: t.number)  # samplers expect trials in number order
        return trials


class SnapshotStorage(BaseStorage):
    """Optuna storage over ``backend`` whose trial-list reads come from a per-study snapshot.

    Args:
        backend: the storage every call goes to (an `optuna.storages.RDBStorage`; wrapped in
            Optuna's incremental trial cache, so a refresh reads only what changed).
        max_age_s: a snapshot older than this is taken again on the next read; `refresh`
            takes one at once.
    """

    def __init__(self, backend: BaseStorage, max_age_s: float = DEFAULT_MAX_AGE_S) -> None:
        if not max_age_s >= 0:
            raise ValueError(f"max_age_s must be >= 0, got {max_age_s=}")
        # The public helper `load_study` itself uses: RDB storages get Optuna's trial cache.
        self._backend = optuna.storages.get_storage(backend)
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._snapshots: dict[int, _Snapshot] = {}
        self._created: set[int] = set()  # trial ids this storage created or popped
        self._study_of: dict[int, int] = {}  # trial id -> study id, for the overlay
        self._templates: dict[int, FrozenTrial] = {}  # thread id -> its next trial's template

    # --- snapshots -------------------------------------------------------------------------

    def refresh(self, study_id: int) -> None:
        """Take the study's snapshot now (this storage's own overlay is dropped with the old
        one: the database already holds every write it made)."""
        with self._lock:
            self._take(study_id)

    def _take(self, study_id: int) -> _Snapshot:
        trials = self._backend.get_all_trials(study_id, deepcopy=False)
        snapshot = _Snapshot(trials)
        self._snapshots[study_id] = snapshot
        for trial in trials:
            self._study_of[trial._trial_id] = study_id
        return snapshot

    def _current(self, study_id: int) -> _Snapshot:
        snapshot = self._snapshots.get(study_id)
        if snapshot is None or time.monotonic() - snapshot.taken > self.max_age_s:
            snapshot = self._take(study_id)
        return snapshot

    def _update(self, trial_id: int, change: Any) -> None:
        """Replace the snapshot's trial by a changed copy, if its study is in a snapshot.

        Never in place: a trial handed out by `get_all_trials` may be in a sampler's hands on
        another thread (and the snapshot's first objects are Optuna's own cache)."""
        with self._lock:
            study_id = self._study_of.get(trial_id)
            snapshot = self._snapshots.get(study_id) if study_id is not None else None
            number = snapshot.numbers.get(trial_id) if snapshot is not None else None
            if snapshot is None or number is None:
                return  # the next snapshot reads it from the database
            trial = copy.deepcopy(snapshot.trials[number])
            change(trial)
            snapshot.put(trial)
            snapshot.own.add(number)

    def _replace(self, trial: FrozenTrial) -> None:
        """Put the database's copy of a trial into its study's snapshot."""
        with self._lock:
            study_id = self._study_of.get(trial._trial_id)
            snapshot = self._snapshots.get(study_id) if study_id is not None else None
            if snapshot is not None and trial.number in snapshot.trials:
                snapshot.put(trial)
                snapshot.own.discard(trial.number)

    def _add(self, study_id: int, trial: FrozenTrial) -> None:
        with self._lock:
            self._study_of[trial._trial_id] = study_id
            snapshot = self._snapshots.get(study_id)
            if snapshot is None:
                return
            snapshot.put(trial)
            snapshot.numbers[trial._trial_id] = trial.number
            snapshot.own.add(trial.number)

    # --- trial reads -----------------------------------------------------------------------

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        with self._lock:
            snapshot = self._current(study_id)
            trials = snapshot.all() if states is None else snapshot.in_states(states)
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trial(self, trial_id: int) -> FrozenTrial:
        if trial_id in self._created:
            with self._lock:
                study_id = self._study_of[trial_id]
                snapshot = self._snapshots.get(study_id)
                number = snapshot.numbers.get(trial_id) if snapshot is not None else None
                if snapshot is not None and number is not None and number in snapshot.own:
                    return copy.deepcopy(snapshot.trials[number])
        return self._backend.get_trial(trial_id)

    # --- trial writes: the database first, then this storage's copy ------------------------

    @contextmanager
    def creating_from(self, template: FrozenTrial) -> Iterator[Callable[[], bool]]:
        """Within the block, the next trial this thread creates without a template (as
        ``Study.ask`` does when no trial is WAITING) is created from ``template``.

        Yields a function that says whether the template was used: ``ask`` takes a WAITING
        trial instead when the study has one.
        """
        thread = threading.get_ident()
        with self._lock:
            self._templates[thread] = template
        try:
            yield lambda: thread not in self._templates
        finally:
            with self._lock:
                self._templates.pop(thread, None)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is None:
            with self._lock:
                template_trial = self._templates.pop(threading.get_ident(), None)
        trial_id = self._backend.create_new_trial(study_id, template_trial)
        trial = copy.deepcopy(self._backend.get_trial(trial_id))
        self._created.add(trial_id)
        self._add(study_id, trial)
        return trial_id

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        self._backend.set_trial_param(trial_id, param_name, param_value_internal, distribution)

        def change(trial: FrozenTrial) -> None:
            trial.params[param_name] = distribution.to_external_repr(param_value_internal)
            trial.distributions[param_name] = distribution

        self._update(trial_id, change)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        try:
            changed = self._backend.set_trial_state_values(trial_id, state, values)
        except optuna.exceptions.UpdateFinishedTrialError:
            self._replace(self._backend.get_trial(trial_id))  # finished: popped no more
            raise
        if changed and state is TrialState.RUNNING:
            self._created.add(trial_id)  # popped from the queue: this worker's trial now

        def change(trial: FrozenTrial) -> None:
            # Not changed: another worker popped it first; either way it waits no more.
            trial.state = state if changed else TrialState.RUNNING
            if changed and values is not None:
                trial.values = list(values)

        self._update(trial_id, change)
        return changed

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        self._backend.set_trial_intermediate_value(trial_id, step, intermediate_value)
        value = intermediate_value
        self._update(trial_id, lambda t: t.intermediate_values.__setitem__(step, value))

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._backend.set_trial_user_attr(trial_id, key, value)
        self._update(trial_id, lambda t: t.user_attrs.__setitem__(key, value))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._backend.set_trial_system_attr(trial_id, key, value)
        self._update(trial_id, lambda t: t.system_attrs.__setitem__(key, value))

    # --- everything else: the backend ------------------------------------------------------

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._backend.get_trial_id_from_study_id_trial_number(study_id, trial_number)

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        return self._backend.get_trial_system_attrs(trial_id)

    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        return self._backend.create_new_study(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        with self._lock:
            self._snapshots.pop(study_id, None)
        self._backend.delete_study(study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._backend.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._backend.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._backend.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._backend.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._backend.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._backend.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._backend.get_study_system_attrs(study_id)

    def get_all_studies(self) -> list[FrozenStudy]:
        return self._backend.get_all_studies()

    def remove_session(self) -> None:
        self._backend.remove_session()


__all__ = ["DEFAULT_MAX_AGE_S", "SnapshotStorage"]

"""The worker's heartbeat thread: our ``mtl_workers`` row and Optuna's trial heartbeats.

Optuna beats a trial only inside ``study.optimize()``; a worker asks and tells on its own, so it
must beat for every trial it trains, or another worker would fail them as stale after
``Settings.stale_after_s``. One daemon thread does both every ``interval`` seconds:

* ``WorkerRepository.heartbeat`` with what the worker is doing (idle/busy, study, trial,
  trials done), so ``GET /api/v1/workers`` shows it live;
* ``RDBStorage.record_heartbeat(trial_id)`` for each trial the worker holds now.

A failed beat is logged and tried again at the next interval: a database that is away for less
than the grace period costs nothing.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from storage import Database, WorkerRepository, WorkerStatus

logger = logging.getLogger(__name__)


@dataclass
class WorkerState:
    """What the worker row says: status, current study and trial, finished trials."""

    status: WorkerStatus = WorkerStatus.IDLE
    study_id: str | None = None
    trial_number: int | None = None
    trials_done: int = 0


class Heartbeat:
    """Beats for a worker and its running trials from a background thread.

    Args:
        database: the process's `Database`.
        worker_id: the registered worker.
        interval: seconds between beats (``Settings.worker_heartbeat_s``).
    """

    def __init__(self, database: Database, worker_id: str, interval: float) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval=}")
        self._database = database
        self._worker_id = worker_id
        self._interval = interval
        self._lock = threading.Lock()
        self._trials: set[int] = set()
        self._state = WorkerState()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (a first beat happens at once)."""
        if self._thread is not None:
            raise RuntimeError("heartbeat already started")
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{self._worker_id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (no final beat: the caller marks the worker)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 2 * self._interval))
            self._thread = None

    def add_trial(self, trial_id: int) -> None:
        """Beat for this trial from now on, starting with one beat at once.

        Optuna never counts a trial without a heartbeat row as stale, so the first beat must
        not wait for the thread: a worker killed right after ``ask()`` would leave a RUNNING
        trial that nobody ever fails.
        """
        with self._lock:
            self._trials.add(trial_id)
        self._database.optuna_storage().record_heartbeat(trial_id)

    def discard_trial(self, trial_id: int) -> None:
        """Stop beating for this trial (it was told)."""
        with self._lock:
            self._trials.discard(trial_id)

    def set_state(
        self,
        status: WorkerStatus,
        study_id: str | None = None,
        trial_number: int | None = None,
        trials_done: int | None = None,
    ) -> None:
        """What the next beat writes into the worker row (no database access here)."""
        with self._lock:
            self._state.status = status
            self._state.study_id = study_id
            self._state.trial_number = trial_number
            if trials_done is not None:
                self._state.trials_done = trials_done

    @property
    def trial_ids(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._trials)

    def beat(self) -> None:
        """Write one heartbeat of the worker and of each of its trials now."""
        with self._lock:
            state = WorkerState(**vars(self._state))
            trials = sorted(self._trials)
        storage = self._database.optuna_storage()
        for trial_id in trials:
            storage.record_heartbeat(trial_id)
        with self._database.session() as session:
            WorkerRepository(session).heartbeat(
                self._worker_id,
                state.status,
                state.study_id,
                state.trial_number,
                trials_done=state.trials_done,
            )

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as exc:  # the next beat may succeed; never kill the thread
                logger.warning("heartbeat of worker %s failed: %s", self._worker_id, exc)
            if self._stop.wait(self._interval):
                return


__all__ = ["Heartbeat", "WorkerState"]

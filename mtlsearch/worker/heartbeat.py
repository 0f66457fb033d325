"""The worker's heartbeat thread: our ``mtl_workers`` row, every ``interval`` seconds.

``WorkerRepository.heartbeat`` with what the worker is doing (idle/busy, study, trial, trials
done), so ``GET /api/v1/workers`` shows it live. The row is also what keeps the worker's trials
alive: a peer fails the ``mtl_trials`` rows of a worker whose row has not beaten for
``Settings.stale_after_s`` (`mtlsearch.worker.stale`), so there is one write per beat however
many trials the worker holds (no per-trial Optuna heartbeats).

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
    """Beats for a worker from a background thread.

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

    def beat(self) -> None:
        """Write one heartbeat of the worker now."""
        with self._lock:
            state = WorkerState(**vars(self._state))
        with self._database.session() as session:
            WorkerRepository(session).heartbeat(
                self._worker_id,
                state.status,
                state.study_id,
                state.trial_number,
                trials_done=state.trials_done,
            )

    def _run(self) -> None:
        failing = False
        while True:
            try:
                self.beat()
            except Exception as exc:  # the next beat may succeed; never kill the thread
                # Said once per outage, not once per beat.
                log = logger.debug if failing else logger.warning
                log("heartbeat of worker %s failed: %s", self._worker_id, exc)
                failing = True
            else:
                if failing:
                    logger.warning("heartbeat of worker %s beats again", self._worker_id)
                failing = False
            if self._stop.wait(self._interval):
                return


__all__ = ["Heartbeat", "WorkerState"]

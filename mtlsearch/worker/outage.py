"""Waiting out a database that cannot be reached: a restart, a failover, a network cut.

The worker's writes are facts the study needs (a trial's outcome, a slot given back), so a
write that fails because the database is away is not dropped: `DatabaseOutage.call` runs it
again, with a growing pause, until the database answers. While it waits the worker goes on
training what it holds. One warning says the database went away and one line says it is back,
instead of a traceback per call.

If the outage outlasts ``Settings.stale_after_s``, peers take the worker's trials
(`mtlsearch.worker.stale`); the worker's late writes are then refused by their conditional
UPDATEs (`storage.TrialRepository.finish` returns False) and dropped, and it goes on with new
trials.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from storage.errors import DatabaseUnavailableError, is_unreachable

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: First and longest pause between two tries while the database is away.
FIRST_PAUSE_S = 0.5
LONGEST_PAUSE_S = 5.0
#: Once the worker is stopping, how long a write still waits for the database.
AFTER_STOP_S = 30.0


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database could not be reached (ours, SQLAlchemy's or Optuna's
    error): the same call may succeed once it answers."""
    return isinstance(exc, DatabaseUnavailableError) or is_unreachable(exc)


class DatabaseOutage:
    """Runs database work again while the database cannot be reached (module docstring).

    Shared by the worker's threads; each call waits on its own.

    Args:
        stop: the worker's stop event. Once it is set a call waits at most ``after_stop_s``
            more, then raises the last error (a peer will take what this worker held).
    """

    def __init__(self, stop: threading.Event, after_stop_s: float = AFTER_STOP_S) -> None:
        self.stop = stop
        self.after_stop_s = after_stop_s
        self._lock = threading.Lock()
        self._down_since: float | None = None

    @property
    def down(self) -> bool:
        """True while the last call found the database away."""
        return self._down_since is not None

    def call(self, what: str, work: Callable[[], T]) -> T:
        """``work()``, again and again while it fails because the database is away.

        Args:
            what: what the work does, for the log (``"recording trial 3 of study x"``).

        Raises:
            Whatever ``work`` raises that is not an unreachable database, at once; the last
            error once the worker has been stopping for ``after_stop_s``.
        """
        pause = FIRST_PAUSE_S
        stopping_since: float | None = None
        while True:
            try:
                result = work()
            except Exception as exc:
                if not unreachable(exc):
                    raise
                self._went_away(what, exc)
                if self.stop.is_set():
                    stopping_since = stopping_since or time.monotonic()
                    if time.monotonic() - stopping_since >= self.after_stop_s:
                        raise
                    time.sleep(pause)
                else:
                    self.stop.wait(pause)
                pause = min(2 * pause, LONGEST_PAUSE_S)
                continue
            self.answered()
            return result

    def noted(self, what: str, exc: BaseException) -> bool:
        """For a caller that goes on without the database: True when ``exc`` is an unreachable
        database (said once per outage), False for any other error (the caller raises it)."""
        if not unreachable(exc):
            return False
        self._went_away(what, exc)
        return True

    def pause(self, what: str, exc: BaseException) -> bool:
        """For a loop that tries again by itself: `noted`, and a pause when True; the loop
        calls `answered` after a pass that reached the database."""
        if not self.noted(what, exc):
            return False
        self.stop.wait(1.0)
        return True

    def answered(self) -> None:
        """The database answered: log once that it is back, if it was away."""
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            logger.warning("the database answers again after %.1f s", time.monotonic() - since)

    def _went_away(self, what: str, exc: BaseException) -> None:
        with self._lock:
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
        if first:
            logger.warning("the database is unreachable (%s): %s; retrying", what, _line(exc))


def _line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


__all__ = ["DatabaseOutage", "unreachable"]

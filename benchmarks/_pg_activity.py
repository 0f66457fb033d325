"""What one database of the PostgreSQL server does while a benchmark runs (benchmarks/fleet.py).

`ActivitySampler` reads ``pg_stat_activity`` and ``pg_locks`` every ``interval_s`` from the
server's maintenance database (so its own connection is not counted) and keeps, for the
backends whose ``datname`` is the benchmark's database: the peak number of connections, lock
waits, and each backend's CPU time from ``/proc/<pid>/stat`` (the server must run on this
machine; otherwise the CPU figure is None). `DatabaseCounters` reads ``pg_stat_database``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

logger = logging.getLogger(__name__)

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")

_BACKENDS = """
SELECT a.pid, CASE WHEN a.wait_event_type = 'Lock' THEN a.wait_event END,
       EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted)
FROM pg_stat_activity a
WHERE a.datname = %s
"""

_COUNTERS = """
SELECT xact_commit, xact_rollback, deadlocks, conflicts, tup_returned, tup_fetched
FROM pg_stat_database WHERE datname = %s
"""


def backend_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of one process (None: not on this machine, or gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces, in parentheses): utime is the
    # 14th field of the line, stime the 15th.
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


class ActivitySampler:
    """Samples one database's backends on a thread, from `start` to `stop` (or as a context
    manager).

    Args:
        admin_url: libpq URL of another database on the same server (where it connects).
        database: the ``datname`` to watch.
        interval_s: seconds between two samples.
    """

    def __init__(self, admin_url: str, database: str, interval_s: float = 0.5) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s=}")
        self.admin_url = admin_url
        self.database = database
        self.interval_s = interval_s
        self.samples = 0
        self.peak_connections = 0
        #: Backends seen waiting on a heavyweight lock (wait_event_type 'Lock'), summed over
        #: the samples; and the most at once.
        self.lock_wait_samples = 0
        self.peak_lock_waits = 0
        #: The lock waits by what was waited for (``wait_event``: transactionid, tuple, ...).
        self.lock_waits_by_event: Counter[str] = Counter()
        #: Backends holding a pg_locks entry not granted, summed over the samples.
        self.ungranted_lock_samples = 0
        #: Each backend's last CPU reading (seconds), by pid; None once one was unreadable.
        self._cpu: dict[int, float] | None = {}
        #: The readings of the first sample (backends already open at `start`): their CPU
        #: counts from there. A backend first seen later counts from 0 (it started since).
        self._baseline: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def cpu_s(self) -> float | None:
        """CPU seconds the database's backends used since `start`, each as last read (a lower
        bound: up to one interval of a backend's work before it exits is missed). None: a
        backend's /proc entry was unreadable (the server runs elsewhere)."""
        if self._cpu is None:
            return None
        return sum(seconds - self._baseline.get(pid, 0.0) for pid, seconds in self._cpu.items())

    def start(self) -> None:
        """Connect and take the first sample (the baseline), then sample on a thread."""
        connection = psycopg.connect(self.admin_url, autocommit=True)
        self._sample(connection)
        self._thread = threading.Thread(
            target=self._run, args=(connection,), name="pg-activity", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Take a last sample, end the thread and close its connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"sampling pg_stat_activity failed: {self.error}") from self.error

    def __enter__(self) -> ActivitySampler:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.stop()
            return
        try:  # the run's own error is the one to see
            self.stop()
        except RuntimeError:
            logger.exception("sampling pg_stat_activity failed too")

    def _run(self, connection: psycopg.Connection[Any]) -> None:
        try:
            with connection:
                while not self._stop.wait(self.interval_s):
                    self._sample(connection)
                self._sample(connection)  # the last state, once the run has ended
        except Exception as exc:  # reported by stop(), on the caller's thread
            self.error = exc

    def _sample(self, connection: psycopg.Connection[Any]) -> None:
        rows = connection.execute(_BACKENDS, (self.database,)).fetchall()
        events = [event for _, event, _ in rows if event is not None]
        waiting = len(events)
        self.lock_waits_by_event.update(events)
        first = self.samples == 0
        self.samples += 1
        self.peak_connections = max(self.peak_connections, len(rows))
        self.lock_wait_samples += waiting
        self.peak_lock_waits = max(self.peak_lock_waits, waiting)
        self.ungranted_lock_samples += sum(1 for _, _, ungranted in rows if ungranted)
        if self._cpu is None:
            return
        readable = 0
        for pid, _, _ in rows:
            seconds = backend_cpu_s(pid)
            if seconds is None:
                continue  # it exited since the query: its last reading stays counted
            readable += 1
            self._cpu[pid] = seconds
            if first:
                self._baseline[pid] = seconds
        if first and rows and not readable:
            logger.warning("cannot read any backend's /proc/<pid>/stat: no PostgreSQL CPU figure")
            self._cpu = None


@dataclass(frozen=True)
class DatabaseCounters:
    """``pg_stat_database`` counters of one database (cumulative since it was created)."""

    commits: int
    rollbacks: int
    deadlocks: int
    conflicts: int
    rows_returned: int
    rows_fetched: int

    @classmethod
    def read(cls, admin_url: str, database: str) -> DatabaseCounters:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            row = connection.execute(_COUNTERS, (database,)).fetchone()
        if row is None:
            raise LookupError(f"pg_stat_database has no row for {database!r}")
        return cls(*(int(value) for value in row))

    def __sub__(self, before: DatabaseCounters) -> DatabaseCounters:
        return DatabaseCounters(
            self.commits - before.commits,
            self.rollbacks - before.rollbacks,
            self.deadlocks - before.deadlocks,
            self.conflicts - before.conflicts,
            self.rows_returned - before.rows_returned,
            self.rows_fetched - before.rows_fetched,
        )


def max_connections(admin_url: str) -> tuple[int, int]:
    """The server's ``max_connections``, and the client connections open now (all databases)."""
    with psycopg.connect(admin_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT current_setting('max_connections')::int, count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend'"
        ).fetchone()
    assert row is not None  # an aggregate always returns one row
    return int(row[0]), int(row[1])

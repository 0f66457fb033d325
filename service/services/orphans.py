"""Optuna studies of a create that failed half-way: deleted now, or once the database is back.

Creating a study writes its Optuna study, then our ``mtl_studies`` record, in two transactions
(`service.services.studies.create_study`). When the record cannot be written the Optuna study
must go again, else it is left without its record. If the database went away in between
(restarting, unreachable), deleting fails as well: `OrphanCleaner` then keeps the name and
retries from a background thread until the database answers, so that a POST cut off by a
database restart leaves nothing behind once the database is back.

A study is only deleted while no record names it: when the connection died during the record's
COMMIT the client cannot know whether it happened, and a study whose record exists is whole.
What a process killed mid-create leaves is not covered (nothing remembers it).
"""

from __future__ import annotations

import logging
import threading
import time

import optuna

from storage import Database, DatabaseUnavailableError, StudyRepository

logger = logging.getLogger(__name__)

#: Seconds between two attempts while the database is unreachable.
RETRY_S = 1.0
#: After this long a name is given up (logged with the command that deletes it by hand).
GIVE_UP_S = 3600.0


def drop_optuna_study(database: Database, name: str) -> None:
    """Delete the Optuna study `name`; a missing one is fine (already gone).

    Raises:
        StorageError: the database failed (`DatabaseUnavailableError`: it cannot be reached).
    """
    try:
        optuna.delete_study(study_name=name, storage=database.optuna_storage())
    except KeyError:
        logger.debug("Optuna study %r was already gone", name)
    except optuna.exceptions.StorageInternalError as exc:
        raise database.storage_error(exc, f"deleting the Optuna study {name!r}") from exc


def drop_unless_recorded(database: Database, name: str) -> bool:
    """Delete the Optuna study `name` unless a study record names it; whether it was deleted.

    Raises:
        StorageError: the database failed (`DatabaseUnavailableError`: it cannot be reached).
    """
    with database.session() as session:
        recorded = StudyRepository(session).get_by_optuna_name(name)
    if recorded is not None:
        logger.info("Optuna study %r has its record (study %s): kept", name, recorded.id)
        return False
    drop_optuna_study(database, name)
    return True


def discard_now(database: Database, name: str) -> bool:
    """One attempt at `drop_unless_recorded` for a failed create; False when the database is
    unreachable (worth a retry), True otherwise. Never raises (other failures are logged)."""
    try:
        drop_unless_recorded(database, name)
    except DatabaseUnavailableError as exc:
        logger.warning("could not delete the Optuna study %r of a failed create: %s", name, exc)
        return False
    except Exception:
        logger.exception("could not delete the Optuna study %r of a failed create", name)
    return True


class OrphanCleaner:
    """Deletes the Optuna studies of failed creates, retrying while the database is away.

    Args:
        database: the database of the studies.
        retry_s: seconds between attempts while the database cannot be reached.
        give_up_s: seconds after which a name is given up (and logged).
    """

    def __init__(
        self, database: Database, *, retry_s: float = RETRY_S, give_up_s: float = GIVE_UP_S
    ) -> None:
        if retry_s <= 0:
            raise ValueError(f"retry_s must be > 0, got {retry_s=}")
        if give_up_s < 0:
            raise ValueError(f"give_up_s must be >= 0, got {give_up_s=}")
        self._database = database
        self._retry_s = retry_s
        self._give_up_s = give_up_s
        self._pending: dict[str, float] = {}  # name -> when it was first queued (monotonic)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pending(self) -> list[str]:
        """The names still waiting for the database."""
        with self._lock:
            return sorted(self._pending)

    def discard(self, name: str) -> None:
        """Delete the Optuna study `name` of a failed create, now or once the database answers.

        Never raises: the caller is already failing with the create's own error.
        """
        if not discard_now(self._database, name):
            self._queue(name)

    def _queue(self, name: str) -> None:
        with self._lock:
            self._pending.setdefault(name, time.monotonic())
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="mtlsearch-orphan-cleaner", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._retry_s):
            with self._lock:
                names = list(self._pending.items())
            for name, since in names:
                if self._attempt(name, since):
                    with self._lock:
                        self._pending.pop(name, None)
            with self._lock:
                if not self._pending:
                    self._thread = None
                    return

    def _attempt(self, name: str, since: float) -> bool:
        """One try at `name`; True when it is settled (deleted, kept, or given up)."""
        try:
            if drop_unless_recorded(self._database, name):
                logger.info("deleted Optuna study %r of a failed create", name)
            return True
        except DatabaseUnavailableError:
            if time.monotonic() - since < self._give_up_s:
                return False
            reason = f"the database was unreachable for {self._give_up_s:.0f} s"
        except Exception as exc:  # the thread must live on for the other names
            reason = str(exc) or type(exc).__name__
        logger.error(
            "gave up deleting the Optuna study %r of a failed create (%s); delete it with "
            "optuna.delete_study(study_name=%r, storage=...)",
            name,
            reason,
            name,
        )
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop retrying (names still pending are logged)."""
        self._stop.set()
        with self._lock:
            thread = self._thread
            left = sorted(self._pending)
        if thread is not None:
            thread.join(timeout_s)
        if left:
            logger.warning("Optuna studies of failed creates left to delete by hand: %s", left)


__all__ = [
    "GIVE_UP_S",
    "RETRY_S",
    "OrphanCleaner",
    "discard_now",
    "drop_optuna_study",
    "drop_unless_recorded",
]

"""Workers: who is training, on what device, and when each last sent a heartbeat."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.errors import NotFoundError
from storage.models import WorkerRecord, WorkerStatus, utcnow
from storage.repositories._common import parse_enum, rowcount


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker as stored; `live` is True if it is not stopped and heart-beat recently."""

    id: str
    hostname: str
    pid: int
    device: str
    started_at: datetime
    last_heartbeat: datetime
    status: WorkerStatus
    current_study_id: str | None
    current_trial_number: int | None
    trials_done: int
    live: bool
    experiments: tuple[str, ...] = ()
    batch_size: int | str | None = None
    #: Experiments it has registered but cannot serve, each with the reason.
    unavailable: dict[str, str] = field(default_factory=dict)


def _batch_size(stored: str | None) -> int | str | None:
    # Stored as text so that "auto" and a number share one column.
    if stored is None or not stored.isdigit():
        return stored
    return int(stored)


def _info(record: WorkerRecord, live_since: datetime | None) -> WorkerInfo:
    status = WorkerStatus(record.status)
    live = (
        live_since is not None
        and status is not WorkerStatus.STOPPED
        and record.last_heartbeat >= live_since
    )
    return WorkerInfo(
        id=record.id,
        hostname=record.hostname,
        pid=record.pid,
        device=record.device,
        started_at=record.started_at,
        last_heartbeat=record.last_heartbeat,
        status=status,
        current_study_id=record.current_study_id,
        current_trial_number=record.current_trial_number,
        trials_done=record.trials_done,
        live=live,
        experiments=tuple(record.experiments or ()),
        batch_size=_batch_size(record.batch_size),
        unavailable=dict(record.unavailable or {}),
    )


class WorkerRepository:
    """Reads and writes ``mtl_workers`` inside the caller's session (the caller commits).

    Args:
        session: from `Database.session()`.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def register(
        self,
        *,
        hostname: str,
        pid: int,
        device: str,
        worker_id: str | None = None,
        experiments: Sequence[str] = (),
        batch_size: int | str | None = None,
        unavailable: Mapping[str, str] | None = None,
    ) -> WorkerInfo:
        """Record a starting worker (idle, zero trials). Registering an id again resets it.

        Args:
            hostname: machine the worker runs on.
            pid: its process id.
            device: e.g. ``"cuda:0"`` or ``"cpu"``.
            worker_id: default ``"<hostname>-<pid>-<6 hex>"``.
            experiments: the experiment names it can run (its registry, plugins included).
            batch_size: its ``--batch``: an int >= 1 or ``"auto"``; None if unknown.
            unavailable: experiments registered but not servable here, each with the reason
                (they are not in `experiments`).
        """
        if not hostname:
            raise ValueError(f"hostname must not be empty, got {hostname!r}")
        if not device:
            raise ValueError(f"device must not be empty, got {device!r}")
        if isinstance(experiments, str):
            raise TypeError(f"experiments must be a sequence of names, got {experiments!r}")
        if batch_size not in (None, "auto") and (
            not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1
        ):
            raise ValueError(f"batch_size must be an int >= 1 or 'auto', got {batch_size!r}")
        worker_id = worker_id or f"{hostname}-{pid}-{secrets.token_hex(3)}"
        now = utcnow()
        record = self._session.get(WorkerRecord, worker_id) or WorkerRecord(id=worker_id)
        record.hostname = hostname
        record.pid = pid
        record.device = device
        record.started_at = now
        record.last_heartbeat = now
        record.status = WorkerStatus.IDLE.value
        record.current_study_id = None
        record.current_trial_number = None
        record.trials_done = 0
        record.experiments = sorted(set(experiments))
        record.batch_size = None if batch_size is None else str(batch_size)
        record.unavailable = dict(unavailable or {})
        self._session.add(record)
        self._session.flush()
        return _info(record, live_since=now)

    def heartbeat(
        self,
        worker_id: str,
        status: WorkerStatus | str,
        study_id: str | None = None,
        trial_number: int | None = None,
        *,
        trials_done: int | None = None,
    ) -> None:
        """Stamp the worker's heartbeat and what it is doing now.

        Args:
            worker_id: the registered worker.
            status: ``idle`` or ``busy``.
            study_id: the study it trains (None when idle).
            trial_number: the Optuna trial number it trains (None when idle).
            trials_done: the worker's total of finished trials; None leaves it unchanged.

        Raises:
            NotFoundError: the worker was never registered.
        """
        values: dict[str, object] = {
            "last_heartbeat": utcnow(),
            "status": parse_enum(WorkerStatus, status, "worker status").value,
            "current_study_id": study_id,
            "current_trial_number": trial_number,
        }
        if trials_done is not None:
            if trials_done < 0:
                raise ValueError(f"trials_done must be >= 0, got {trials_done=}")
            values["trials_done"] = trials_done
        statement = (
            update(WorkerRecord)
            .where(WorkerRecord.id == worker_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if not rowcount(self._session, statement):
            raise NotFoundError(f"no worker with id {worker_id!r}")

    def mark_unavailable(self, worker_id: str, experiment: str, reason: str) -> None:
        """The worker found it cannot serve ``experiment`` (e.g. its data set is missing or
        corrupt on its machine): it no longer lists it, and says why.

        Raises:
            NotFoundError: no worker ``worker_id``.
        """
        record = self._session.get(WorkerRecord, worker_id, populate_existing=True)
        if record is None:
            raise NotFoundError(f"no worker with id {worker_id!r}")
        record.experiments = [name for name in record.experiments or () if name != experiment]
        record.unavailable = {**(record.unavailable or {}), experiment: reason}
        self._session.flush()

    def mark_stopped(self, worker_id: str) -> None:
        """Record that the worker has exited cleanly.

        Raises:
            NotFoundError: the worker was never registered.
        """
        self.heartbeat(worker_id, WorkerStatus.STOPPED)

    def get(self, worker_id: str, live_within_s: float) -> WorkerInfo:
        """One worker; live if it heart-beat within `live_within_s` seconds.

        Raises:
            NotFoundError: naming the id.
        """
        record = self._session.get(WorkerRecord, worker_id, populate_existing=True)
        if record is None:
            raise NotFoundError(f"no worker with id {worker_id!r}")
        return _info(record, live_since=self._live_since(live_within_s))

    def list(self, live_within_s: float) -> list[WorkerInfo]:
        """Every worker, oldest first; live if it heart-beat within `live_within_s` seconds.

        Args:
            live_within_s: e.g. ``Settings.stale_after_s``.
        """
        live_since = self._live_since(live_within_s)
        records = self._session.scalars(
            select(WorkerRecord)
            .order_by(WorkerRecord.started_at, WorkerRecord.id)
            .execution_options(populate_existing=True)
        ).all()
        return [_info(r, live_since) for r in records]

    @staticmethod
    def _live_since(live_within_s: float) -> datetime:
        if not live_within_s > 0:
            raise ValueError(f"live_within_s must be > 0, got {live_within_s=}")
        return utcnow() - timedelta(seconds=live_within_s)


__all__ = ["WorkerInfo", "WorkerRepository"]

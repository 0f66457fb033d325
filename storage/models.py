"""The tables of mtlsearch (SQLAlchemy 2.0 declarative models).

Every table name starts with ``mtl_`` so that ours never collide with the tables Optuna's RDB
storage keeps in the same database. The schema itself is created and changed by the Alembic
migrations in ``storage/migrations`` (``mtlsearch db upgrade``); a test checks that the
migrations and these models agree. ORM objects never leave ``storage/``: repositories turn them
into the frozen dataclasses of ``storage.repositories``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Constraint names are spelled out so that a migration can name the constraint it alters on
# SQLite (batch mode) and on PostgreSQL alike.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAME_LENGTH = 200
OPTUNA_NAME_LENGTH = 512  # the length of Optuna's own `studies.study_name`


class StudyStatus(StrEnum):
    """Where a study is in its life. Only ``running`` studies are served to workers."""

    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        """True for the states a study never leaves on its own."""
        return self is not StudyStatus.RUNNING


class TrialState(StrEnum):
    """Where one trial of ``mtl_trials`` is: a retry waiting for a worker, a budget slot taken
    by a worker, training, or finished."""

    QUEUED = "queued"
    RESERVED = "reserved"
    RUNNING = "running"
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAIL = "fail"

    @property
    def is_finished(self) -> bool:
        """True for the states a trial never leaves."""
        return self not in (TrialState.QUEUED, TrialState.RESERVED, TrialState.RUNNING)


class TrialKind(StrEnum):
    """What a row of ``mtl_trials`` is for: a trial of the search (it takes a budget slot), or a
    confirmation run of a finished search (a configuration retrained at another seed)."""

    SEARCH = "search"
    CONFIRMATION = "confirmation"


class FailureKind(StrEnum):
    """Why a trial failed, for code (the row's ``reason`` is for people)."""

    DIVERGED = "diverged"
    OUT_OF_MEMORY = "out_of_memory"
    BAD_CONFIG = "bad_config"
    USER_CODE = "user_code"
    LOST_WORKER = "lost_worker"
    WORKER_SETUP = "worker_setup"
    CANCELLED = "cancelled"
    STOPPED = "stopped"
    ERROR = "error"

    @property
    def is_the_trials(self) -> bool:
        """True when the trial's own configuration failed (it may count towards the study's
        failure streak); False when the trial was ended from outside or by its worker."""
        return self in (
            FailureKind.DIVERGED,
            FailureKind.OUT_OF_MEMORY,
            FailureKind.BAD_CONFIG,
            FailureKind.USER_CODE,
            FailureKind.ERROR,
        )


class WorkerStatus(StrEnum):
    """What a worker process last said it was doing."""

    IDLE = "idle"
    BUSY = "busy"
    STOPPED = "stopped"


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC (every timestamp we store is one)."""
    return datetime.now(UTC)


def _in_list(column: str, enum: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(member.value) for member in enum)})"


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL keeps the zone (``timestamptz``); SQLite has no zone type and returns naive
    values, so they are stored as UTC wall time and read back with ``tzinfo=UTC``. Naive input
    is refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"timestamps must be timezone-aware, got {value!r}")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of mtlsearch's own tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class StudyRecord(Base):
    """One search: its validated spec, its status and its trial budget."""

    __tablename__ = "mtl_studies"
    __table_args__ = (
        CheckConstraint(_in_list("status", StudyStatus), name="status"),
        CheckConstraint("trials_reserved >= 0", name="trials_reserved"),
        Index("ix_mtl_studies_status_served", "status", "last_served_at"),
        Index("ix_mtl_studies_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    experiment: Mapped[str] = mapped_column(String(NAME_LENGTH))
    spec: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    optuna_study_name: Mapped[str] = mapped_column(String(OPTUNA_NAME_LENGTH), unique=True)
    n_trials: Mapped[int | None] = mapped_column(Integer)
    time_budget_s: Mapped[float | None] = mapped_column(Float)
    trials_reserved: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    last_served_at: Mapped[datetime | None]
    message: Mapped[str | None] = mapped_column(Text)
    #: When the search's budget was met and its best configurations were queued for
    #: confirmation at other seeds (``mtl_trials`` rows of kind 'confirmation'); None before.
    confirmation_started_at: Mapped[datetime | None]


class WorkerRecord(Base):
    """One worker process and its last heartbeat.

    ``current_study_id`` is deliberately not a foreign key: a study may be deleted while a
    worker still reports it, and a heartbeat must never fail for that. ``experiments`` are the
    names the worker's registry held when it registered (plugins included), so the API can say
    when no live worker can serve a study; ``batch_size`` is its ``--batch`` (``"1"``, ``"8"``,
    ``"auto"``), None for rows written before it was recorded.
    """

    __tablename__ = "mtl_workers"
    __table_args__ = (CheckConstraint(_in_list("status", WorkerStatus), name="status"),)

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    last_heartbeat: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    current_study_id: Mapped[str | None] = mapped_column(String(12))
    current_trial_number: Mapped[int | None] = mapped_column(Integer)
    trials_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    experiments: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    #: Experiments registered in the worker that it cannot serve, each with the reason (a data
    #: set missing or corrupt on its machine): it does not take their studies.
    unavailable: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    batch_size: Mapped[str | None] = mapped_column(String(16))


class ArtifactRecord(Base):
    """A JSON result attached to a study (e.g. kind ``best``); one per (study, kind)."""

    __tablename__ = "mtl_artifacts"
    __table_args__ = (UniqueConstraint("study_id", "kind", name="uq_mtl_artifacts_study_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[str] = mapped_column(
        String(12), ForeignKey("mtl_studies.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class TrialRecord(Base):
    """One trial of a study, from the budget slot a worker reserved to its outcome.

    ``number`` and ``optuna_trial_id`` are Optuna's, NULL until the slot became a trial;
    ``value`` repeats the first objective so SQL can take a study's min or max;
    ``params_key`` (`params_key`) finds the trials that sampled the same params.

    ``retry_of`` is the number of the lost trial this row runs again. It is unique within a
    study, so a lost trial has at most one retry whatever the workers do; and a retry that is
    lost in turn gets none (a second retry would need the same ``retry_of``). A retry row is
    created ``queued``, with the lost trial's params and budget slot, in the transaction that
    fails the lost trial (`storage.TrialRepository.claim_lost`).

    ``kind`` 'confirmation' rows retrain a configuration of a finished search at another seed
    (`storage.TrialRepository.start_confirmation`): they take no budget slot and have no
    Optuna trial (``number`` is NULL); ``confirms`` names the configuration (a search
    ``params_key``, or ``'uniform'``) and ``(study_id, confirms, seed)`` is unique.

    What determines a trial's run is recorded: ``seed`` and the config (with its ``data_seed``),
    and ``num_slots``, the K of the batched pass it trained in (a slot's arithmetic is the same
    whatever the other slots hold, but not across K): ``mtlsearch train --from-trial``
    reproduces the run from them; a member of a population (``population`` not NULL) trained
    with the fixed weights of its trajectory and took other members' state as its lineage says.
    """

    __tablename__ = "mtl_trials"
    __table_args__ = (
        CheckConstraint(_in_list("state", TrialState), name="state"),
        UniqueConstraint("study_id", "number", name="uq_mtl_trials_study_number"),
        UniqueConstraint("study_id", "retry_of", name="uq_mtl_trials_study_retry_of"),
        UniqueConstraint("study_id", "confirms", "seed", name="uq_mtl_trials_study_confirms"),
        CheckConstraint(_in_list("kind", TrialKind), name="kind"),
        CheckConstraint(
            f"failure_kind IS NULL OR {_in_list('failure_kind', FailureKind)}", name="failure_kind"
        ),
        Index("ix_mtl_trials_study_id_state", "study_id", "state"),
        Index("ix_mtl_trials_study_id_params_key", "study_id", "params_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[str] = mapped_column(
        String(12), ForeignKey("mtl_studies.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int | None] = mapped_column(Integer)
    optuna_trial_id: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(
        String(16), default=TrialKind.SEARCH.value, server_default=TrialKind.SEARCH.value
    )
    confirms: Mapped[str | None] = mapped_column(String(64))
    worker_id: Mapped[str | None] = mapped_column(String(255))
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: A hash of ``params`` (keys sorted), so "the same configuration" is one indexed lookup.
    params_key: Mapped[str | None] = mapped_column(String(64))
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    weights_normalised: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    values: Mapped[list[float] | None] = mapped_column(JSON)
    value: Mapped[float | None] = mapped_column(Float)
    val_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    test_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    strategy_weights: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: The weights the strategy applied, per epoch (each the epoch's mean, Σ = tasks).
    weights_trajectory: Mapped[list[Any] | None] = mapped_column(JSON)
    epochs_run: Mapped[int | None] = mapped_column(Integer)
    #: A population member's trajectory of fixed weights, lineage and planned epochs
    #: (`mtl_core.results.TrialResult.population`); NULL for a trial outside a population.
    population: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: 64-bit: a spec's seed goes up to 2**32 - 1, and repeats and confirmation runs add to it.
    seed: Mapped[int | None] = mapped_column(BigInteger)
    num_slots: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    failure_kind: Mapped[str | None] = mapped_column(String(32))
    retry_of: Mapped[int | None] = mapped_column(Integer)
    reserved_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


def params_key(params: dict[str, Any]) -> str:
    """The ``mtl_trials.params_key`` of ``params``: SHA-256 of their JSON with sorted keys."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class BaselineRecord(Base):
    """Single-task baseline metrics of an experiment, keyed by a hash of their training config."""

    __tablename__ = "mtl_baselines"

    experiment: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    config_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    metrics: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


__all__ = [
    "ArtifactRecord",
    "Base",
    "BaselineRecord",
    "FailureKind",
    "StudyRecord",
    "StudyStatus",
    "TrialKind",
    "TrialRecord",
    "TrialState",
    "UTCDateTime",
    "WorkerRecord",
    "WorkerStatus",
    "utcnow",
]

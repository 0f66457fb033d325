"""The studies resource: create, read, page trials, best result, cancel, delete.

Each study lives in two places of the same database: our ``mtl_studies`` row (spec, status,
budget) and its Optuna study (trials). Creating and deleting keep the two together: nothing
half-written remains when either step fails.
"""

from __future__ import annotations

import logging
import secrets
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

import optuna
from sqlalchemy.orm import Session

from mtlsearch.search.optuna_factory import create_optuna_study
from mtlsearch.search.spec import StudySpec
from mtlsearch.search.spec_checks import validate_against_experiment
from service.errors import ConflictError
from service.schemas.studies import (
    ConfirmationCounts,
    StudiesPublic,
    StudyPublic,
    TrialCounts,
)
from service.schemas.trials import TrialPublic, TrialsPublic
from service.services.orphans import OrphanCleaner, discard_now, drop_optuna_study
from service.services.trial_reads import pareto_size, study_directions, trial_public
from service.services.workers import live_experiments, unserved_message
from storage import (
    Database,
    NotFoundError,
    StudyExistsError,
    StudyInfo,
    StudyRepository,
    StudyStatus,
    TrialRepository,
)
from storage.repositories.trials import BEST_ARTIFACT as TRIAL_BEST_ARTIFACT

logger = logging.getLogger(__name__)

#: The artifact kind a worker stores when a study completes; served as is by ``/best``.
BEST_ARTIFACT = TRIAL_BEST_ARTIFACT


def _progress(info: StudyInfo, counts: dict[str, int], now: datetime) -> float:
    if info.status is StudyStatus.COMPLETED:
        return 1.0
    fractions = [0.0]
    if info.n_trials:
        finished = counts["complete"] + counts["pruned"] + counts["fail"] + counts["cancelled"]
        fractions.append(finished / info.n_trials)
    if info.time_budget_s:
        end = info.finished_at or now
        fractions.append((end - info.created_at).total_seconds() / info.time_budget_s)
    return min(1.0, max(fractions))


def _phase(info: StudyInfo) -> Literal["searching", "confirming"] | None:
    if info.status is not StudyStatus.RUNNING:
        return None
    return "confirming" if info.confirming else "searching"


def _message(info: StudyInfo, served: frozenset[str] | None, check: bool) -> str | None:
    # Computed at read time, never stored: a worker starting or dying changes it at once.
    if check and info.status is StudyStatus.RUNNING:
        return unserved_message(info.experiment, served) or info.message
    return info.message


def optuna_study_ids(database: Database, infos: Sequence[StudyInfo]) -> dict[str, int]:
    """Our study id -> its Optuna study id (for the dashboard link), through Optuna's public
    storage API; studies whose Optuna study is gone are left out.

    Raises:
        StorageError: the database failed.
    """
    storage = database.optuna_storage()
    result = {}
    for info in infos:
        try:
            result[info.id] = storage.get_study_id_from_name(info.optuna_study_name)
        except KeyError:
            logger.debug("study %s has no Optuna study %r", info.id, info.optuna_study_name)
        except optuna.exceptions.StorageInternalError as exc:
            raise database.storage_error(exc, "reading the Optuna study ids") from exc
    return result


def publish(
    session: Session,
    infos: Sequence[StudyInfo],
    stale_after_s: float | None = None,
    *,
    optuna_ids: dict[str, int] | None = None,
) -> list[StudyPublic]:
    """The public view of `infos`, with trial counts and best values (a few batched queries).

    With `stale_after_s`, a running study whose experiment no live worker has says so in its
    ``message``; `optuna_ids` (`optuna_study_ids`) give the Optuna study ids and dashboard links.
    """
    check = stale_after_s is not None
    served = live_experiments(session, stale_after_s) if stale_after_s is not None else None
    trials = TrialRepository(session)
    study_ids = [info.id for info in infos]
    counts = trials.state_counts(study_ids)
    confirmations = trials.confirmation_counts(study_ids)
    dirs = {info.id: study_directions(info) for info in infos}
    best = trials.best_values(study_ids, dirs)
    now = datetime.now(UTC)
    result = []
    for info in infos:
        full_counts = TrialCounts(**counts[info.id])
        study_dirs = dirs[info.id]
        pareto = None
        if len(study_dirs) > 1:
            pareto = pareto_size(trials.completed_values(info.id), study_dirs)
        sid = optuna_ids.get(info.id) if optuna_ids is not None else None
        result.append(
            StudyPublic(
                id=info.id,
                name=info.name,
                experiment=info.experiment,
                status=info.status.value,
                created_at=info.created_at,
                updated_at=info.updated_at,
                finished_at=info.finished_at,
                n_trials=info.n_trials,
                time_budget_s=info.time_budget_s,
                trials=full_counts,
                phase=_phase(info),
                confirmation=(
                    ConfirmationCounts(**confirmations[info.id])
                    if info.id in confirmations
                    else None
                ),
                directions=study_dirs,
                best_value=best.get(info.id),
                pareto_size=pareto,
                progress=_progress(info, full_counts.model_dump(), now),
                message=_message(info, served, check),
                optuna_study_name=info.optuna_study_name,
                optuna_study_id=sid,
                dashboard_url=f"/dashboard/studies/{sid}" if sid is not None else None,
                spec=info.spec,
            )
        )
    return result


def create_study(
    database: Database, spec: StudySpec, orphans: OrphanCleaner | None = None
) -> StudyPublic:
    """Validate `spec` against its experiment, then create the Optuna study and our record.

    The Optuna study is created first (on SQLite a second writer would wait on our open
    transaction otherwise); if our record cannot be written, the Optuna study is deleted again,
    by `orphans` (which retries once the database is back when it is unreachable; None: one
    attempt now).

    Raises:
        SpecError: the spec does not fit its experiment (names the field).
        StudyExistsError: a study of that name exists.
        StorageError: the database failed.
    """
    experiment = validate_against_experiment(spec)
    with database.session() as session:
        if StudyRepository(session).get_by_name(spec.name) is not None:
            raise StudyExistsError(f"a study named {spec.name!r} already exists")
    # Unique even when a study of the same name is deleted and created again.
    optuna_name = f"{spec.name}-{secrets.token_hex(6)}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            create_optuna_study(database.optuna_storage(), spec, optuna_name, experiment=experiment)
    except optuna.exceptions.DuplicatedStudyError:
        raise StudyExistsError(f"an Optuna study named {optuna_name!r} already exists") from None
    except optuna.exceptions.OptunaError as exc:
        _discard(database, orphans, optuna_name)
        raise database.storage_error(exc, f"creating the Optuna study {optuna_name!r}") from exc
    try:
        with database.session() as session:
            info = StudyRepository(session).create(
                name=spec.name,
                experiment=spec.experiment,
                spec=spec.model_dump(mode="json"),
                n_trials=spec.n_trials,
                time_budget_s=spec.time_budget_s,
                optuna_study_name=optuna_name,
            )
            public = publish(session, [info], optuna_ids=optuna_study_ids(database, [info]))[0]
    except BaseException:
        _discard(database, orphans, optuna_name)
        raise
    logger.info("created study %s (%s) on %s", info.id, info.name, info.experiment)
    return public


def _discard(database: Database, orphans: OrphanCleaner | None, optuna_name: str) -> None:
    if orphans is not None:
        orphans.discard(optuna_name)
    else:
        discard_now(database, optuna_name)


def list_studies(
    database: Database,
    *,
    offset: int,
    limit: int,
    status: StudyStatus | None,
    stale_after_s: float,
) -> StudiesPublic:
    """One page of studies, newest first.

    Args:
        stale_after_s: when a worker stops counting as live (for unserved studies' message).
    """
    with database.session() as session:
        infos, count = StudyRepository(session).list(offset=offset, limit=limit, status=status)
        ids = optuna_study_ids(database, infos)
        return StudiesPublic(
            data=publish(session, infos, stale_after_s, optuna_ids=ids), count=count
        )


def get_study(database: Database, study_id: str, stale_after_s: float) -> StudyPublic:
    """One study.

    Args:
        stale_after_s: when a worker stops counting as live (for an unserved study's message).

    Raises:
        NotFoundError: naming the id.
    """
    with database.session() as session:
        info = StudyRepository(session).get(study_id)
        ids = optuna_study_ids(database, [info])
        return publish(session, [info], stale_after_s, optuna_ids=ids)[0]


def _move_study(
    database: Database,
    study_id: str,
    to: StudyStatus,
    message: str | None,
    expected: StudyStatus | tuple[StudyStatus, ...],
    refusal: str,
) -> StudyPublic:
    """One conditional status change; a study in another status gets a 409 saying
    ``study '<id>' is <status><refusal>``."""
    with database.session() as session:
        repo = StudyRepository(session)
        changed = repo.set_status(study_id, to, message, expected=expected)
        info = repo.get(study_id)
        if not changed:
            raise ConflictError(f"study {study_id!r} is {info.status.value}{refusal}")
        public = publish(session, [info], optuna_ids=optuna_study_ids(database, [info]))[0]
    logger.info("study %s (%s) is now %s", study_id, info.name, to.value)
    return public


def cancel_study(database: Database, study_id: str) -> StudyPublic:
    """Mark a running study cancelled: workers take no more of its trials and stop its running
    ones at their next epoch.

    Raises:
        NotFoundError: naming the id.
        ConflictError: the study is no longer running.
    """
    return _move_study(
        database,
        study_id,
        StudyStatus.CANCELLED,
        "cancelled through the API",
        expected=StudyStatus.RUNNING,
        refusal=", not running; only a running study can be cancelled",
    )


def resume_study(database: Database, study_id: str) -> StudyPublic:
    """Run a failed or cancelled study again, its budget as it was: the trials that failed or
    were cancelled gave their slots back, so workers run as many as are missing.

    Raises:
        NotFoundError: naming the id.
        ConflictError: the study is running or completed.
    """
    return _move_study(
        database,
        study_id,
        StudyStatus.RUNNING,
        None,
        expected=(StudyStatus.FAILED, StudyStatus.CANCELLED),
        refusal="; only a failed or cancelled study can be resumed",
    )


def delete_study(database: Database, study_id: str) -> None:
    """Delete a study: its Optuna study, then our record and its artifacts.

    Running studies are first marked cancelled (so workers stop serving them). If the Optuna
    deletion fails the record stays and the call can be repeated.

    Raises:
        NotFoundError: naming the id.
    """
    with database.session() as session:
        repo = StudyRepository(session)
        info = repo.get(study_id)
        if info.status is StudyStatus.RUNNING:
            repo.set_status(study_id, StudyStatus.CANCELLED, "being deleted", expected="running")
    drop_optuna_study(database, info.optuna_study_name)
    with database.session() as session:
        StudyRepository(session).delete(study_id)
    logger.info("deleted study %s (%s)", study_id, info.name)


def list_trials(
    database: Database,
    study_id: str,
    *,
    offset: int,
    limit: int,
    states: Sequence[str] | None = None,
) -> TrialsPublic:
    """One page of a study's trials by number, paged in SQL.

    Raises:
        NotFoundError: naming the id.
    """
    with database.session() as session:
        StudyRepository(session).get(study_id)
        rows, count = TrialRepository(session).page(study_id, offset, limit, states)
    return TrialsPublic(data=[trial_public(row) for row in rows], count=count)


def get_trial(database: Database, study_id: str, number: int) -> TrialPublic:
    """One trial of a study by its number, with what determines its run.

    Raises:
        NotFoundError: no such study, or it has no trial of that number (naming both).
    """
    with database.session() as session:
        try:
            StudyRepository(session).get(study_id)
        except NotFoundError as exc:
            raise NotFoundError(f"{exc} (asked for its trial {number})") from None
        row = TrialRepository(session).by_number(study_id, number)
    if row is None:
        raise NotFoundError(f"study {study_id!r} has no trial {number}")
    return trial_public(row)


__all__ = [
    "BEST_ARTIFACT",
    "cancel_study",
    "create_study",
    "delete_study",
    "get_study",
    "get_trial",
    "list_studies",
    "list_trials",
    "optuna_study_ids",
    "publish",
    "resume_study",
]

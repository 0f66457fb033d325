"""A study's trial budget in SQL: ``mtl_studies.trials_reserved`` moved by conditional UPDATEs.

Every row of ``mtl_trials`` that is queued, reserved, running or finished COMPLETE / PRUNED
holds one slot of its study's budget; a FAIL gives its slot back in the transaction that fails
it (the trial will be run again), and a lost trial's retry takes its slot over instead. These
statements run inside the caller's transaction, next to the row change they account for.
"""

from __future__ import annotations

from sqlalchemy import Update, update
from sqlalchemy.orm import Session

from storage.models import StudyRecord, StudyStatus
from storage.repositories._common import rowcount


def take_slot(session: Session, study_id: str) -> bool:
    """Take one slot of the study's trial budget, atomically across all workers.

    One conditional UPDATE: it succeeds only while the study is running and fewer than
    ``n_trials`` slots are taken, so many workers together start exactly ``n_trials``.
    """
    statement = (
        update(StudyRecord)
        .where(
            StudyRecord.id == study_id,
            StudyRecord.status == StudyStatus.RUNNING.value,
            (StudyRecord.n_trials.is_(None)) | (StudyRecord.trials_reserved < StudyRecord.n_trials),
        )
        .values(trials_reserved=StudyRecord.trials_reserved + 1)
        .execution_options(synchronize_session=False)
    )
    return rowcount(session, statement) == 1


def release_slots(study_id: str, n: int = 1) -> Update:
    """The UPDATE giving ``n`` slots of ``study_id`` back, never below 0."""
    return (
        update(StudyRecord)
        .where(StudyRecord.id == study_id, StudyRecord.trials_reserved >= n)
        .values(trials_reserved=StudyRecord.trials_reserved - n)
        .execution_options(synchronize_session=False)
    )


__all__ = ["release_slots", "take_slot"]

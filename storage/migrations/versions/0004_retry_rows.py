"""A lost trial's retry is a row of ``mtl_trials``, unique per lost trial.

Until 0003 a retry was a WAITING trial in Optuna's tables, queued after reading whether one was
queued already (``retried`` marked the promise): two workers' maintenance could both queue one.
From here the retry is a ``queued`` row with ``retry_of`` set, created in the transaction that
fails the lost trial, and ``(study_id, retry_of)`` is unique, so the database itself refuses a
second retry. ``retried`` goes: a retry row says it.

Rows from before this revision keep what they were; a WAITING retry that 0003 queued in Optuna
and no worker asked yet is run by the next worker that asks the study (Optuna's ``ask`` takes
waiting trials first) as an ordinary trial of its budget.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_STATES = "state IN ('reserved', 'running', 'complete', 'pruned', 'fail')"
_NEW_STATES = "state IN ('queued', 'reserved', 'running', 'complete', 'pruned', 'fail')"


def upgrade() -> None:
    with op.batch_alter_table("mtl_trials") as batch:
        batch.drop_constraint(op.f("ck_mtl_trials_state"), type_="check")
        batch.create_check_constraint(op.f("ck_mtl_trials_state"), sa.text(_NEW_STATES))
        batch.create_unique_constraint(
            op.f("uq_mtl_trials_study_retry_of"), ["study_id", "retry_of"]
        )
        batch.drop_column("retried")


def downgrade() -> None:
    # A queued retry holds its lost trial's budget slot: the slot goes back with the row.
    op.execute(
        "UPDATE mtl_studies SET trials_reserved = trials_reserved - (SELECT count(*) FROM "
        "mtl_trials WHERE mtl_trials.study_id = mtl_studies.id AND mtl_trials.state = 'queued')"
    )
    op.execute("DELETE FROM mtl_trials WHERE state = 'queued'")
    with op.batch_alter_table("mtl_trials") as batch:
        batch.add_column(
            sa.Column("retried", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.drop_constraint(op.f("uq_mtl_trials_study_retry_of"), type_="unique")
        batch.drop_constraint(op.f("ck_mtl_trials_state"), type_="check")
        batch.create_check_constraint(op.f("ck_mtl_trials_state"), sa.text(_OLD_STATES))

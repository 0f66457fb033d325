"""Confirmation runs, typed failures, what determines a run, and what a worker cannot serve.

* ``mtl_trials.kind`` ('search' or 'confirmation'), ``confirms`` (the configuration a
  confirmation run retrains: a search ``params_key`` or 'uniform'), unique with ``seed`` per
  study; ``mtl_studies.confirmation_started_at``.
* ``mtl_trials.failure_kind``: why a trial failed, for code (``reason`` stays the words).
* ``mtl_trials.seed``, ``num_slots`` (the K of the batched pass it trained in) and
  ``weights_trajectory`` (the weights the strategy applied, per epoch).
* ``mtl_workers.unavailable``: experiments a worker has registered but cannot serve, with why.

Rows from before keep NULL in the new columns (kind 'search'); such a trial's run is not
reproducible exactly (``train --from-trial`` says so).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = "kind IN ('search', 'confirmation')"
_FAILURE_KINDS = (
    "failure_kind IS NULL OR failure_kind IN ('diverged', 'out_of_memory', 'bad_config', "
    "'user_code', 'lost_worker', 'worker_setup', 'cancelled', 'stopped', 'error')"
)


def upgrade() -> None:
    with op.batch_alter_table("mtl_trials") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), server_default="search", nullable=False))
        batch.add_column(sa.Column("confirms", sa.String(64), nullable=True))
        batch.add_column(sa.Column("weights_trajectory", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("seed", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("num_slots", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("failure_kind", sa.String(32), nullable=True))
        batch.create_check_constraint(op.f("ck_mtl_trials_kind"), sa.text(_KINDS))
        batch.create_check_constraint(op.f("ck_mtl_trials_failure_kind"), sa.text(_FAILURE_KINDS))
        batch.create_unique_constraint(
            op.f("uq_mtl_trials_study_confirms"), ["study_id", "confirms", "seed"]
        )
    with op.batch_alter_table("mtl_studies") as batch:
        batch.add_column(
            sa.Column("confirmation_started_at", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("mtl_workers") as batch:
        batch.add_column(sa.Column("unavailable", sa.JSON(), server_default="{}", nullable=False))


def downgrade() -> None:
    op.execute("DELETE FROM mtl_trials WHERE kind = 'confirmation'")
    with op.batch_alter_table("mtl_workers") as batch:
        batch.drop_column("unavailable")
    with op.batch_alter_table("mtl_studies") as batch:
        batch.drop_column("confirmation_started_at")
    with op.batch_alter_table("mtl_trials") as batch:
        batch.drop_constraint(op.f("uq_mtl_trials_study_confirms"), type_="unique")
        batch.drop_constraint(op.f("ck_mtl_trials_failure_kind"), type_="check")
        batch.drop_constraint(op.f("ck_mtl_trials_kind"), type_="check")
        for column in ("failure_kind", "num_slots", "seed", "weights_trajectory", "confirms"):
            batch.drop_column(column)
        batch.drop_column("kind")

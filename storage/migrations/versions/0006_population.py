"""A population member's weight trajectory and lineage.

* ``mtl_trials.population``: for a trial that trained as a member of a population
  (population-based training of its fixed loss weights), its trajectory of fixed weights, its
  lineage (whose state it took, after which epoch) and its planned epochs
  (`mtl_core.results.TrialResult.population`); NULL for every other trial.

Rows from before keep NULL: none of them trained in a population.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-14
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mtl_trials") as batch:
        batch.add_column(sa.Column("population", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mtl_trials") as batch:
        batch.drop_column("population")

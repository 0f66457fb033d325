"""Workers record the experiments they can run and their batch size.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows from before this revision get no experiments and no batch size: such a worker is
    # counted as serving nothing until it registers again (every start does).
    with op.batch_alter_table("mtl_workers") as batch:
        batch.add_column(sa.Column("experiments", sa.JSON(), server_default="[]", nullable=False))
        batch.add_column(sa.Column("batch_size", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mtl_workers") as batch:
        batch.drop_column("batch_size")
        batch.drop_column("experiments")

"""Our own per-trial table: budget slots, outcomes and retries of every study's trials.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mtl_trials",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("study_id", sa.String(12), nullable=False),
        sa.Column("number", sa.Integer(), nullable=True),
        sa.Column("optuna_trial_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("worker_id", sa.String(255), nullable=True),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("params_key", sa.String(64), nullable=True),
        sa.Column("config", sa.JSON(), nullable=True),
        sa.Column("weights_normalised", sa.JSON(), nullable=True),
        sa.Column("values", sa.JSON(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("val_metrics", sa.JSON(), nullable=True),
        sa.Column("test_metrics", sa.JSON(), nullable=True),
        sa.Column("strategy_weights", sa.JSON(), nullable=True),
        sa.Column("epochs_run", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("retry_of", sa.Integer(), nullable=True),
        sa.Column("retried", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("reserved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('reserved', 'running', 'complete', 'pruned', 'fail')",
            name=op.f("ck_mtl_trials_state"),
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["mtl_studies.id"],
            name=op.f("fk_mtl_trials_study_id_mtl_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mtl_trials")),
        sa.UniqueConstraint("study_id", "number", name="uq_mtl_trials_study_number"),
    )
    op.create_index("ix_mtl_trials_study_id", "mtl_trials", ["study_id"])
    op.create_index("ix_mtl_trials_study_id_state", "mtl_trials", ["study_id", "state"])
    op.create_index("ix_mtl_trials_study_id_params_key", "mtl_trials", ["study_id", "params_key"])


def downgrade() -> None:
    op.drop_index("ix_mtl_trials_study_id_params_key", table_name="mtl_trials")
    op.drop_index("ix_mtl_trials_study_id_state", table_name="mtl_trials")
    op.drop_index("ix_mtl_trials_study_id", table_name="mtl_trials")
    op.drop_table("mtl_trials")

"""Initial tables: studies, workers, artifacts, baselines.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mtl_studies",
        sa.Column("id", sa.String(12), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("experiment", sa.String(200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("optuna_study_name", sa.String(512), nullable=False),
        sa.Column("n_trials", sa.Integer(), nullable=True),
        sa.Column("time_budget_s", sa.Float(), nullable=True),
        sa.Column("trials_reserved", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_served_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'completed', 'cancelled', 'failed')",
            name=op.f("ck_mtl_studies_status"),
        ),
        sa.CheckConstraint("trials_reserved >= 0", name=op.f("ck_mtl_studies_trials_reserved")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mtl_studies")),
        sa.UniqueConstraint("name", name=op.f("uq_mtl_studies_name")),
        sa.UniqueConstraint("optuna_study_name", name=op.f("uq_mtl_studies_optuna_study_name")),
    )
    op.create_index("ix_mtl_studies_status_served", "mtl_studies", ["status", "last_served_at"])
    op.create_index("ix_mtl_studies_created_at", "mtl_studies", ["created_at"])

    op.create_table(
        "mtl_workers",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_heartbeat", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("current_study_id", sa.String(12), nullable=True),
        sa.Column("current_trial_number", sa.Integer(), nullable=True),
        sa.Column("trials_done", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "status IN ('idle', 'busy', 'stopped')", name=op.f("ck_mtl_workers_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mtl_workers")),
    )

    op.create_table(
        "mtl_artifacts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("study_id", sa.String(12), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["mtl_studies.id"],
            name=op.f("fk_mtl_artifacts_study_id_mtl_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mtl_artifacts")),
        sa.UniqueConstraint("study_id", "kind", name="uq_mtl_artifacts_study_kind"),
    )

    op.create_table(
        "mtl_baselines",
        sa.Column("experiment", sa.String(200), nullable=False),
        sa.Column("config_key", sa.String(128), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("experiment", "config_key", name=op.f("pk_mtl_baselines")),
    )


def downgrade() -> None:
    op.drop_table("mtl_baselines")
    op.drop_table("mtl_artifacts")
    op.drop_table("mtl_workers")
    op.drop_index("ix_mtl_studies_created_at", table_name="mtl_studies")
    op.drop_index("ix_mtl_studies_status_served", table_name="mtl_studies")
    op.drop_table("mtl_studies")

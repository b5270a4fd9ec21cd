"""replication_policy: replication policies (Harbor's /replication/policies)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 14:55:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dockyard.db.base

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "replication_policy",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("src_registry_id", sa.BigInteger(), nullable=False),
        sa.Column("dest_registry_id", sa.BigInteger(), nullable=False),
        sa.Column("dest_namespace", sa.String(length=255), nullable=False),
        sa.Column("dest_namespace_replace_count", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("filters", sa.Text(), nullable=False),
        sa.Column("replicate_deletion", sa.Boolean(), nullable=False),
        sa.Column("override", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("speed", sa.Integer(), nullable=False),
        sa.Column("copy_by_chunk", sa.Boolean(), nullable=False),
        sa.Column("single_active_replication", sa.Boolean(), nullable=False),
        sa.Column("creation_time", dockyard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("update_time", dockyard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replication_policy")),
        sa.UniqueConstraint("name", name=op.f("uq_replication_policy_name")),
    )
    op.create_index(
        op.f("ix_replication_policy_src_registry_id"),
        "replication_policy",
        ["src_registry_id"],
    )
    op.create_index(
        op.f("ix_replication_policy_dest_registry_id"),
        "replication_policy",
        ["dest_registry_id"],
    )


def downgrade() -> None:
    op.drop_table("replication_policy")

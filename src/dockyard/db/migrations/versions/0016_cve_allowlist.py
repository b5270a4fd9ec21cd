"""cve_allowlist: the system's and each project's CVE allowlist

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 15:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dockyard.db.base

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cve_allowlist",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("creation_time", dockyard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("update_time", dockyard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cve_allowlist")),
        sa.UniqueConstraint("project_id", name=op.f("uq_cve_allowlist_project_id")),
    )


def downgrade() -> None:
    op.drop_table("cve_allowlist")

"""registry: registry endpoints (Harbor's /registries), credentials sealed at rest

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 14:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dockyard.db.base

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registry",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("credential_type", sa.String(length=16), nullable=False),
        sa.Column("access_key", sa.String(length=255), nullable=False),
        sa.Column("access_secret", sa.Text(), nullable=False),
        sa.Column("insecure", sa.Boolean(), nullable=False),
        sa.Column("ca_certificate", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("creation_time", dockyard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("update_time", dockyard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry")),
        sa.UniqueConstraint("name", name=op.f("uq_registry_name")),
    )


def downgrade() -> None:
    op.drop_table("registry")

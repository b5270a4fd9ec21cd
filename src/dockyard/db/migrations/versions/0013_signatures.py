"""trusted_key, trusted_key_set, signature_verdict: content trust with verified signatures

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 14:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dockyard.db.base

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "trusted_key",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("project_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key_id", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=1024), nullable=False),
        sa.Column("pem", sa.Text(), nullable=False),
        sa.Column("identities", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("creator", sa.String(length=255), nullable=False),
        sa.Column("creation_time", dockyard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.project_id"],
            name=op.f("fk_trusted_key_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trusted_key")),
        sa.UniqueConstraint(
            "project_id", "kind", "key_id", name=op.f("uq_trusted_key_project_id_kind_key_id")
        ),
    )
    op.create_index(op.f("ix_trusted_key_project_id"), "trusted_key", ["project_id"])
    op.create_table(
        "trusted_key_set",
        sa.Column("project_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("key_count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.project_id"],
            name=op.f("fk_trusted_key_set_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "kind", name=op.f("pk_trusted_key_set")),
    )
    op.create_table(
        "signature_verdict",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("artifact_id", _ID, nullable=False),
        sa.Column("signature_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key_set_version", sa.BigInteger(), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=1024), nullable=False),
        sa.Column("key_id", sa.String(length=255), nullable=True),
        sa.Column("signer", sa.String(length=1024), nullable=True),
        sa.Column("checked_time", dockyard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["artifact.id"],
            name=op.f("fk_signature_verdict_artifact_id_artifact"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["signature_id"],
            ["artifact.id"],
            name=op.f("fk_signature_verdict_signature_id_artifact"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signature_verdict")),
        sa.UniqueConstraint(
            "artifact_id",
            "signature_id",
            "key_set_version",
            name=op.f("uq_signature_verdict_artifact_id_signature_id_key_set_version"),
        ),
    )
    op.create_index(
        "ix_signature_verdict_artifact_id_kind_key_set_version_verified",
        "signature_verdict",
        ["artifact_id", "kind", "key_set_version", "verified"],
    )
    op.create_index(
        op.f("ix_signature_verdict_signature_id"), "signature_verdict", ["signature_id"]
    )


def downgrade() -> None:
    op.drop_table("signature_verdict")
    op.drop_table("trusted_key_set")
    op.drop_index(op.f("ix_trusted_key_project_id"), table_name="trusted_key")
    op.drop_table("trusted_key")

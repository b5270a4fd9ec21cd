"""vulndb: OSV records, their affected packages, their generation, adapter scan requests

Revision ID: 0012
Revises: 0008
Create Date: 2026-12-07 14:09:58.224106
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dockyard.db.base

revision: str = "0012"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "vuln_db_generation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "generation", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("update_time", dockyard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vuln_db_generation")),
    )
    op.create_table(
        "scanner_adapter_scan",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("digest", sa.String(length=128), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("inventory", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("creation_time", dockyard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("update_time", dockyard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", dockyard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scanner_adapter_scan")),
    )
    with op.batch_alter_table("scanner_adapter_scan", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_scanner_adapter_scan_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "vuln_record",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("modified", dockyard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published", dockyard.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("aliases", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("cvss_v3_vector", sa.String(length=256), nullable=False),
        sa.Column("cvss_v3_score", sa.Float(), nullable=True),
        sa.Column("cvss_v2_vector", sa.String(length=256), nullable=False),
        sa.Column("cvss_v2_score", sa.Float(), nullable=True),
        sa.Column("cwe_ids", sa.Text(), nullable=False),
        sa.Column("links", sa.Text(), nullable=False),
        sa.Column("withdrawn", sa.Boolean(), nullable=False),
        sa.Column("import_time", dockyard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vuln_record")),
    )
    op.create_table(
        "vuln_affected",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("vuln_id", sa.String(length=128), nullable=False),
        sa.Column("ecosystem", sa.String(length=64), nullable=False),
        sa.Column("package", sa.String(length=255), nullable=False),
        sa.Column("ranges", sa.Text(), nullable=False),
        sa.Column("versions", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["vuln_id"],
            ["vuln_record.id"],
            name=op.f("fk_vuln_affected_vuln_id_vuln_record"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vuln_affected")),
    )
    with op.batch_alter_table("vuln_affected", schema=None) as batch_op:
        batch_op.create_index(
            "ix_vuln_affected_ecosystem_package", ["ecosystem", "package"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_vuln_affected_vuln_id"), ["vuln_id"], unique=False)


def downgrade() -> None:
    op.drop_table("vuln_db_generation")
    with op.batch_alter_table("vuln_affected", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vuln_affected_vuln_id"))
        batch_op.drop_index("ix_vuln_affected_ecosystem_package")

    op.drop_table("vuln_affected")
    op.drop_table("vuln_record")
    with op.batch_alter_table("scanner_adapter_scan", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scanner_adapter_scan_expires_at"))

    op.drop_table("scanner_adapter_scan")

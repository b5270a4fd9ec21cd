"""scanner registrations, project scanners, scan reports and vulnerability records

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 14:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dockyard.db.base

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = dockyard.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "scanner_registration",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("auth", sa.String(length=32), nullable=False),
        sa.Column("access_credential", sa.Text(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("skip_cert_verify", sa.Boolean(), nullable=False),
        sa.Column("use_internal_addr", sa.Boolean(), nullable=False),
        sa.Column("creation_time", _TIME, nullable=False),
        sa.Column("update_time", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scanner_registration")),
        sa.UniqueConstraint("name", name=op.f("uq_scanner_registration_name")),
        sa.UniqueConstraint("uuid", name=op.f("uq_scanner_registration_uuid")),
    )
    op.create_table(
        "project_scanner",
        sa.Column("project_id", _ID, nullable=False),
        sa.Column("registration_id", _ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.project_id"],
            name=op.f("fk_project_scanner_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["scanner_registration.id"],
            name=op.f("fk_project_scanner_registration_id_scanner_registration"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_project_scanner")),
    )
    with op.batch_alter_table("project_scanner", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_project_scanner_registration_id"), ["registration_id"], unique=False
        )
    op.create_table(
        "scan_report",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=64), nullable=False),
        sa.Column("artifact_id", _ID, nullable=False),
        sa.Column("digest", sa.String(length=255), nullable=False),
        sa.Column("registration_uuid", sa.String(length=64), nullable=False),
        sa.Column("mime_type", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("execution_id", sa.BigInteger(), nullable=True),
        sa.Column("task_id", sa.BigInteger(), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("scanner", sa.Text(), nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("start_time", _TIME, nullable=False),
        sa.Column("end_time", _TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["artifact.id"],
            name=op.f("fk_scan_report_artifact_id_artifact"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scan_report")),
        sa.UniqueConstraint(
            "artifact_id",
            "registration_uuid",
            "mime_type",
            name=op.f("uq_scan_report_artifact_id_registration_uuid_mime_type"),
        ),
        sa.UniqueConstraint("uuid", name=op.f("uq_scan_report_uuid")),
    )
    with op.batch_alter_table("scan_report", schema=None) as batch_op:
        batch_op.create_index("ix_scan_report_task_id", ["task_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_scan_report_registration_uuid"), ["registration_uuid"], unique=False
        )
    op.create_table(
        "vulnerability_record",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("cve_id", sa.String(length=255), nullable=False),
        sa.Column("package", sa.String(length=255), nullable=False),
        sa.Column("package_version", sa.String(length=255), nullable=False),
        sa.Column("fix_version", sa.String(length=255), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vulnerability_record")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_vulnerability_record_fingerprint")),
    )
    op.create_table(
        "report_vulnerability",
        sa.Column("report_id", _ID, nullable=False),
        sa.Column("record_id", _ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["vulnerability_record.id"],
            name=op.f("fk_report_vulnerability_record_id_vulnerability_record"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["scan_report.id"],
            name=op.f("fk_report_vulnerability_report_id_scan_report"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("report_id", "record_id", name=op.f("pk_report_vulnerability")),
    )
    with op.batch_alter_table("report_vulnerability", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_report_vulnerability_record_id"), ["record_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("report_vulnerability")
    op.drop_table("vulnerability_record")
    op.drop_table("scan_report")
    op.drop_table("project_scanner")
    op.drop_table("scanner_registration")

"""login failures shared by every node; the revocation counter

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 01:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_failure",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("failed_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failure")),
    )
    with op.batch_alter_table("login_failure", schema=None) as batch_op:
        batch_op.create_index(
            "ix_login_failure_account_address_failed_at",
            ["account", "address", "failed_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_login_failure_address_failed_at", ["address", "failed_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_login_failure_failed_at"), ["failed_at"], unique=False)
    op.create_table(
        "auth_revision",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_revision")),
    )
    # The one row the counter lives in, so that a revocation only ever updates it.
    op.execute(sa.text("INSERT INTO auth_revision (id, revision) VALUES (1, 0)"))


def downgrade() -> None:
    op.drop_table("auth_revision")
    with op.batch_alter_table("login_failure", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_failure_failed_at"))
        batch_op.drop_index("ix_login_failure_address_failed_at")
        batch_op.drop_index("ix_login_failure_account_address_failed_at")
    op.drop_table("login_failure")

"""harbor_user.admin_role_in_auth: administrator because the sign-in provider says so

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 14:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("harbor_user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("admin_role_in_auth", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("harbor_user", schema=None) as batch_op:
        batch_op.drop_column("admin_role_in_auth")

"""robot.name_prefix: the prefix a robot was created with (robot_name_prefix is run time)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 02:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("robot", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_prefix", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("robot", schema=None) as batch_op:
        batch_op.drop_column("name_prefix")

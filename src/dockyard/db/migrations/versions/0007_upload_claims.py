"""blob_upload.holder: the process holding an upload's claim

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 01:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("blob_upload", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holder", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("blob_upload", schema=None) as batch_op:
        batch_op.drop_column("holder")

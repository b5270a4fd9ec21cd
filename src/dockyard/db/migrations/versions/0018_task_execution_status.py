"""task_execution_status: an index on a task's execution and status, so that an
execution's status is derived from a few index probes when one of its tasks ends,
not from a count of all its tasks (which made a 10,000-task scan all quadratic)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 22:15:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_task_execution_id_status", "task", ["execution_id", "status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_task_execution_id_status", table_name="task")

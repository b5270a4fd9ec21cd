"""security_hub: each vulnerability record's CVSS v3 score as a column, and indexes for
the security hub's filters (``/security/vul``: cve_id, package, severity, the score range)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 18:00:00.000000
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000


def _score(data: str) -> float | None:
    try:
        value = json.loads(data).get("preferred_cvss", {}).get("score_v3")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def upgrade() -> None:
    with op.batch_alter_table("vulnerability_record") as batch:
        batch.add_column(sa.Column("cvss_score_v3", sa.Float(), nullable=True))
    op.create_index(
        op.f("ix_vulnerability_record_cve_id"), "vulnerability_record", ["cve_id"], unique=False
    )
    op.create_index(
        op.f("ix_vulnerability_record_cvss_score_v3"),
        "vulnerability_record",
        ["cvss_score_v3"],
        unique=False,
    )
    # Records stored before: their score from the JSON they keep.
    conn = op.get_bind()
    after = 0
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT id, data FROM vulnerability_record WHERE id > :after ORDER BY id LIMIT :n"
            ),
            {"after": after, "n": _BATCH},
        ).fetchall()
        if not rows:
            break
        after = rows[-1][0]
        scored = [{"id": r[0], "score": s} for r in rows if (s := _score(r[1])) is not None]
        if scored:
            conn.execute(
                sa.text("UPDATE vulnerability_record SET cvss_score_v3 = :score WHERE id = :id"),
                scored,
            )


def downgrade() -> None:
    op.drop_index(op.f("ix_vulnerability_record_cvss_score_v3"), table_name="vulnerability_record")
    op.drop_index(op.f("ix_vulnerability_record_cve_id"), table_name="vulnerability_record")
    with op.batch_alter_table("vulnerability_record") as batch:
        batch.drop_column("cvss_score_v3")

"""Queries on labels and on which artifacts carry them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.listing import Condition, PageRequest, apply_q, fetch_page
from dockyard.labels.models import Label, LabelReference

_columns = Label.__table__.c

# What ``q`` may filter on and ``sort`` may order by in a label listing (scope and
# project come from their own parameters, after the permission check).
Q_COLUMNS: dict[str, ColumnElement[Any]] = {
    key: _columns[key]
    for key in ("id", "name", "description", "color", "level", "creation_time", "update_time")
}
SORT_COLUMNS: dict[str, ColumnElement[Any]] = {
    key: _columns[key] for key in ("id", "name", "creation_time", "update_time")
}
DEFAULT_ORDER: tuple[ColumnElement[Any], ...] = (_columns.creation_time.desc(),)


async def find_label(session: AsyncSession, label_id: int) -> Label | None:
    result = await session.execute(
        select(Label).where(Label.id == label_id, Label.deleted.is_(False))
    )
    return result.scalar_one_or_none()


async def label_name_taken(
    session: AsyncSession, name: str, scope: str, project_id: int, *, other_than: int = 0
) -> bool:
    """Whether another label of the same scope (and project) is called ``name``."""
    found = await session.scalar(
        select(Label.id).where(
            Label.name == name,
            Label.scope == scope,
            Label.project_id == project_id,
            Label.id != other_than,
        )
    )
    return found is not None


async def list_labels(
    session: AsyncSession,
    *,
    scope: str,
    project_id: int,
    conditions: Sequence[Condition],
    order: Sequence[ColumnElement[Any]],
    page: PageRequest,
) -> tuple[list[Label], int]:
    """One page of the labels of a scope (and project) that meet ``conditions``."""
    stmt: Select[Any] = select(Label).where(
        Label.scope == scope, Label.project_id == project_id, Label.deleted.is_(False)
    )
    stmt = apply_q(stmt, conditions, Q_COLUMNS)
    rows, total = await fetch_page(session, stmt, page, order or DEFAULT_ORDER, _columns.id.desc())
    return [row[0] for row in rows], total


async def find_reference(
    session: AsyncSession, label_id: int, artifact_id: int
) -> LabelReference | None:
    result = await session.execute(
        select(LabelReference).where(
            LabelReference.label_id == label_id, LabelReference.artifact_id == artifact_id
        )
    )
    return result.scalar_one_or_none()


async def delete_references_to(session: AsyncSession, label_id: int) -> None:
    """Detach the label from every artifact that carries it."""
    await session.execute(delete(LabelReference).where(LabelReference.label_id == label_id))

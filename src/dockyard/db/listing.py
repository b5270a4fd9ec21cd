"""Harbor's listing language, applied in the database: ``q``, ``sort``, ``page``/``page_size``.

``q`` is a comma-separated list of conditions::

    name=dockyard          exact
    name=~dock             fuzzy (substring, case-insensitive)
    creation_time=[2026-01-01~2026-02-01]   range (either end may be empty)
    name={a b c}           any of
    label=(x y)            all of (for multi-valued keys; same as any-of on a column)

``sort`` is a comma-separated list of keys, ``-key`` for descending. Each
listing names the keys it accepts and the column behind each; anything else is
a ``BadRequestError`` that says which keys exist, and so is a ``sort`` of more
than ``MAX_SORT_KEYS`` keys (the database would otherwise refuse a long ORDER BY
with an error). Values are bound parameters, never text spliced into SQL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar

from sqlalchemy import ColumnElement, Row, Select, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.errors import BadRequestError

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 10
_MAX_Q_LENGTH = 4096
_MAX_CONDITIONS = 32
_MAX_VALUES = 100
MAX_SORT_KEYS = 10
"""Keys one ``sort=`` may name; every listing parses ``sort`` here, so this bounds them all."""

T = TypeVar("T", bound=tuple[Any, ...])


@dataclass(frozen=True, slots=True)
class PageRequest:
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


@dataclass(frozen=True, slots=True)
class Condition:
    key: str
    kind: Literal["exact", "fuzzy", "range", "any", "all"]
    values: tuple[str, ...]
    """exact/fuzzy: one value; range: (low, high), either may be ""; any/all: the values."""


def parse_page(page: str | None, page_size: str | None) -> PageRequest:
    number = _positive(page, "page", 1)
    size = _positive(page_size, "page_size", DEFAULT_PAGE_SIZE)
    if size > MAX_PAGE_SIZE:
        raise BadRequestError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    if number > 10_000_000:
        raise BadRequestError("page is too large")
    return PageRequest(number, size)


def _positive(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise BadRequestError(f"{name} must be a positive integer")
    return int(raw)


def parse_q(text: str | None) -> list[Condition]:
    """Parse Harbor's ``q``; raises ``BadRequestError`` naming the part it could not read."""
    if not text:
        return []
    if len(text) > _MAX_Q_LENGTH:
        raise BadRequestError(f"q is longer than {_MAX_Q_LENGTH} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise BadRequestError("q must not contain control characters")
    conditions = []
    for part in _split_top_level(text):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadRequestError(f"q condition {part!r} is not key=value")
        conditions.append(_condition(key, value))
    if len(conditions) > _MAX_CONDITIONS:
        raise BadRequestError(f"q has more than {_MAX_CONDITIONS} conditions")
    return conditions


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``[]``, ``{}`` or ``()``."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _condition(key: str, value: str) -> Condition:
    if value.startswith("~"):
        return Condition(key, "fuzzy", (value[1:],))
    if len(value) >= 2 and value[0] == "[" and value[-1] == "]":
        low, sep, high = value[1:-1].partition("~")
        if not sep:
            raise BadRequestError(f"q range for {key} must be [low~high]")
        return Condition(key, "range", (low.strip(), high.strip()))
    for opener, closer, kind in (("{", "}", "any"), ("(", ")", "all")):
        if len(value) >= 2 and value[0] == opener and value[-1] == closer:
            values = tuple(v for v in value[1:-1].split(" ") if v)
            if not values:
                raise BadRequestError(f"q list for {key} is empty")
            if len(values) > _MAX_VALUES:
                raise BadRequestError(f"q list for {key} has more than {_MAX_VALUES} values")
            return Condition(key, kind, values)  # type: ignore[arg-type]
    return Condition(key, "exact", (value,))


def _python_type(column: ColumnElement[Any]) -> type:
    try:
        python_type: type = column.type.python_type
    except NotImplementedError:
        return str
    return python_type


def _coerce(column: ColumnElement[Any], key: str, raw: str) -> Any:
    python_type = _python_type(column)
    try:
        if python_type is bool:
            lowered = raw.lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return lowered in ("true", "1")
        if python_type is int:
            number = int(raw)
            if not -(2**63) <= number < 2**63:
                raise ValueError(raw)
            return number
        if python_type is float:
            number_f = float(raw)
            if not math.isfinite(number_f):
                raise ValueError(raw)
            return number_f
        if python_type in (datetime, date):
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError:
        raise BadRequestError(
            f"q value {raw!r} for {key} is not a {python_type.__name__}"
        ) from None
    return raw


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def condition_clause(condition: Condition, column: ColumnElement[Any]) -> ColumnElement[bool]:
    key = condition.key
    if condition.kind == "fuzzy":
        if _python_type(column) is not str:
            raise BadRequestError(f"q cannot match {key} fuzzily (=~); give an exact value")
        pattern = f"%{_escape_like(condition.values[0])}%"
        clause: ColumnElement[bool] = func.lower(column).like(pattern.lower(), escape="\\")
        return clause
    if condition.kind == "range":
        low, high = condition.values
        clauses = []
        if low:
            clauses.append(column >= _coerce(column, key, low))
        if high:
            clauses.append(column <= _coerce(column, key, high))
        if not clauses:
            raise BadRequestError(f"q range for {key} has neither end")
        return and_(*clauses)
    if condition.kind in ("any", "all"):
        return column.in_([_coerce(column, key, v) for v in condition.values])
    equal: ColumnElement[bool] = column == _coerce(column, key, condition.values[0])
    return equal


def apply_q(
    stmt: Select[T],
    conditions: Sequence[Condition],
    columns: Mapping[str, ColumnElement[Any]],
) -> Select[T]:
    """Add ``conditions`` to ``stmt``; a key not in ``columns`` is a clear 400."""
    for condition in conditions:
        column = columns.get(condition.key)
        if column is None:
            known = ", ".join(sorted(columns)) or "none"
            raise BadRequestError(f"q cannot filter on {condition.key!r}; keys: {known}")
        stmt = stmt.where(condition_clause(condition, column))
    return stmt


def parse_sort(
    text: str | None, columns: Mapping[str, ColumnElement[Any]]
) -> list[ColumnElement[Any]]:
    """``sort=name,-creation_time`` as ORDER BY clauses; unknown keys are a clear 400."""
    if not text:
        return []
    raws = text.split(",", MAX_SORT_KEYS + 1)
    if sum(1 for raw in raws if raw.strip().lstrip("-")) > MAX_SORT_KEYS:
        raise BadRequestError(f"sort names more than {MAX_SORT_KEYS} keys")
    order: list[ColumnElement[Any]] = []
    for raw in raws:
        key = raw.strip()
        descending = key.startswith("-")
        key = key.lstrip("-")
        if not key:
            continue
        column = columns.get(key)
        if column is None:
            known = ", ".join(sorted(columns)) or "none"
            raise BadRequestError(f"cannot sort by {key!r}; keys: {known}")
        order.append(column.desc() if descending else column.asc())
    return order


async def fetch_page(
    session: AsyncSession,
    stmt: Select[Any],
    page: PageRequest,
    order: Sequence[ColumnElement[Any]],
    tiebreak: ColumnElement[Any],
) -> tuple[list[Row[Any]], int]:
    """One page of ``stmt`` and the total count, both from the database."""
    total = await session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    rows = await session.execute(
        stmt.order_by(*order, tiebreak).limit(page.page_size).offset(page.offset)
    )
    return list(rows), int(total or 0)

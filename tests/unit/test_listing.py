"""Harbor's listing language: q, sort, page and page_size, parsed and turned into SQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Boolean, Column, Integer, MetaData, String, Table, select
from sqlalchemy.dialects import sqlite

from dockyard.db.base import UTCDateTime
from dockyard.db.listing import (
    MAX_PAGE_SIZE,
    Condition,
    PageRequest,
    apply_q,
    parse_page,
    parse_q,
    parse_sort,
)
from dockyard.errors import BadRequestError

_T = Table(
    "t",
    MetaData(),
    Column("id", Integer),
    Column("name", String),
    Column("public", Boolean),
    Column("created", UTCDateTime),
)
COLUMNS = {"id": _T.c.id, "name": _T.c.name, "public": _T.c.public, "created": _T.c.created}


def _sql(q: str) -> tuple[str, dict[str, object]]:
    compiled = apply_q(select(_T.c.id), parse_q(q), COLUMNS).compile(dialect=sqlite.dialect())
    return str(compiled), dict(compiled.params)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name=abc", [Condition("name", "exact", ("abc",))]),
        ("name=~ab", [Condition("name", "fuzzy", ("ab",))]),
        ("id=[1~9]", [Condition("id", "range", ("1", "9"))]),
        ("id=[~9]", [Condition("id", "range", ("", "9"))]),
        ("id={1 2 3}", [Condition("id", "any", ("1", "2", "3"))]),
        ("label=(a b)", [Condition("label", "all", ("a", "b"))]),
        (
            "name=~x,public=true",
            [Condition("name", "fuzzy", ("x",)), Condition("public", "exact", ("true",))],
        ),
        ("id={1,2}", [Condition("id", "any", ("1,2",))]),
        ("", []),
        (None, []),
    ],
)
def test_parse_q(text: str | None, expected: list[Condition]) -> None:
    assert parse_q(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "name",
        "=x",
        "id=[1]",
        "id={}",
        "name=a\x00b",
        "name=~\n",
        "x" * 5000,
        ",".join(["a=1"] * 40),
    ],
)
def test_parse_q_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(BadRequestError):
        parse_q(text)


def test_values_are_bound_never_spliced() -> None:
    sql, params = _sql("name=~%' OR 1=1--")
    assert "OR 1=1" not in sql
    assert params["lower_1"] == "%\\%' or 1=1--%"
    sql, params = _sql("name=a_b")
    assert "a_b" not in sql and params["name_1"] == "a_b"


def test_values_take_the_column_type() -> None:
    sql, params = _sql("id={1 2},public=false,created=[2026-01-01~]")
    assert params["id_1"] == [1, 2]
    assert "t.public = 0" in sql  # a boolean, rendered by the dialect
    assert params["created_1"] == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "q",
    [
        "unknown=1",
        "id=abc",
        "id=~1",
        "public=~t",
        "public=maybe",
        "created=yesterday",
        f"id={2**64}",
        "id=[~]",
    ],
)
def test_bad_conditions_are_clear_400s(q: str) -> None:
    with pytest.raises(BadRequestError):
        _sql(q)


def test_sort() -> None:
    order = parse_sort("name,-id", COLUMNS)
    assert [str(o.compile(dialect=sqlite.dialect())) for o in order] == ["t.name ASC", "t.id DESC"]
    assert parse_sort(None, COLUMNS) == []
    with pytest.raises(BadRequestError, match="keys: created, id, name, public"):
        parse_sort("password", COLUMNS)


@pytest.mark.parametrize(
    ("page", "size", "expected"),
    [(None, None, PageRequest(1, 10)), ("3", "100", PageRequest(3, 100)), ("", "", PageRequest())],
)
def test_page(page: str | None, size: str | None, expected: PageRequest) -> None:
    assert parse_page(page, size) == expected
    assert expected.offset == (expected.page - 1) * expected.page_size


@pytest.mark.parametrize(
    ("page", "size"),
    [
        ("0", None),
        ("-1", None),
        ("abc", None),
        (None, "0"),
        (None, str(MAX_PAGE_SIZE + 1)),
        (None, "1e3"),
        ("９", None),
        ("99999999999", None),
    ],
)
def test_bad_pages(page: str | None, size: str | None) -> None:
    with pytest.raises(BadRequestError):
        parse_page(page, size)

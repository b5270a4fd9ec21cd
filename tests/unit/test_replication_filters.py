"""Replication filters: Harbor's doublestar patterns, regex: and semver: values, excludes,
labels, and destination flattening."""

from __future__ import annotations

import asyncio
import time

import pytest

from dockyard.errors import BadRequestError
from dockyard.replication.filters import Filter, compile_value, flatten, parse
from dockyard.replication.local import Throttle


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("library/*", "library/alpine", True),
        ("library/*", "library/a/b", False),
        ("library/**", "library/a/b", True),
        ("**", "x/y/z", True),
        ("{library,team}/app", "team/app", True),
        ("{library,team}/app", "other/app", False),
        ("app-?", "app-1", True),
        ("app-?", "app-12", False),
        ("v[0-9]*", "v1.2", True),
        ("v[0-9]*", "vx", False),
        ("v1.{0,1}.*", "v1.1.3", True),
        ("", "anything/at/all", True),
        ("a.b", "axb", False),
    ],
)
def test_doublestar_patterns(pattern: str, name: str, expected: bool) -> None:
    assert compile_value("name", pattern)(name) is expected


@pytest.mark.parametrize(
    ("value", "tag", "expected"),
    [
        (r"regex:^v\d+$", "v12", True),
        (r"regex:v\d+", "v12-rc", False),  # the whole tag must match
        (r"regex:(v\d+)?-rc", "v1-rc", True),  # a quantified group without one inside
        ("semver:>=1.2 <2", "1.4.0", True),
        ("semver:>=1.2 <2", "v1.2.0", True),
        ("semver:>=1.2 <2", "2.0.0", False),
        ("semver:>=1.2 <2", "1.1.9", False),
        ("semver:>=1.2 <2", "latest", False),
        ("semver:>=1.2,<2", "1.9", True),
        ("semver:>=1.2 <2", "1.5.0-rc1", False),  # a pre-release only when the range names one
        ("semver:>=1.5.0rc1", "1.5.0-rc2", True),
    ],
)
def test_regex_and_semver_tags(value: str, tag: str, expected: bool) -> None:
    assert compile_value("tag", value)(tag) is expected


@pytest.mark.parametrize(
    "item",
    [
        Filter("colour", "red"),
        Filter("name", "a", "maybe"),
        Filter("tag", "regex:("),
        Filter("tag", "regex:(a+)+$"),
        Filter("name", r"regex:(\w*\d)*x"),
        Filter("tag", "semver:>>1"),
        Filter("tag", "semver:"),
        Filter("name", "semver:>=1"),
        Filter("name", "{a,b"),
        Filter("resource", "helm"),
        Filter("label", ["ok", ""]),
        Filter("tag", ["not", "a", "string"]),
        Filter("name", "x" * 2000),
    ],
)
def test_bad_filters_are_refused(item: Filter) -> None:
    with pytest.raises(BadRequestError):
        parse([item])


def test_selection_combines_filters() -> None:
    selection = parse(
        [
            Filter("name", "library/**"),
            Filter("name", "library/tmp-*", "excludes"),
            Filter("tag", "semver:>=1"),
            Filter("tag", "regex:.*-debug", "excludes"),
            Filter("label", ["prod"]),
            Filter("resource", "image"),
        ]
    )
    assert selection.repository("library/app")
    assert not selection.repository("library/tmp-1")
    assert not selection.repository("other/app")
    assert selection.tag("1.0.0")
    assert not selection.tag("latest")
    assert selection.tags_pass(["latest", "1.2.0"])
    assert not selection.tags_pass(["latest"])
    assert selection.labels_pass({"prod", "x"})
    assert not selection.labels_pass({"dev"})
    assert selection.resource == "image"
    assert parse([]).tags_pass([]) and parse([]).repository("x/y")


@pytest.mark.parametrize(
    ("repository", "namespace", "count", "expected"),
    [
        ("library/a/b", "", 1, "library/a/b"),
        ("library/a/b", "ns", -1, "ns/a/b"),
        ("library/a/b", "ns", 0, "ns/library/a/b"),
        ("library/a/b", "ns", 1, "ns/a/b"),
        ("library/a/b", "ns", 2, "ns/b"),
        ("b", "ns", -1, "ns/b"),
    ],
)
def test_flattening(repository: str, namespace: str, count: int, expected: str) -> None:
    assert flatten(repository, namespace, count) == expected


def test_flattening_too_deep_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot flatten 3 levels"):
        flatten("library/a/b", "ns", 3)


def test_throttle_holds_the_rate() -> None:
    async def run() -> float:
        throttle = Throttle(200_000)

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(10):
                yield b"x" * 20_000

        began = time.monotonic()
        async for _ in throttle.wrap(chunks()):
            pass
        return time.monotonic() - began

    elapsed = asyncio.run(run())
    assert 0.8 <= elapsed <= 1.3  # 200 000 bytes at 200 000 B/s: one second, within 20 %

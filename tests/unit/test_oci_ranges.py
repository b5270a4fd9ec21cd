"""Content-Range of upload chunks, the upload Range header, and GET ranges."""

from __future__ import annotations

import pytest

from dockyard.errors import RangeInvalidError
from dockyard.oci.ranges import format_upload_range, parse_content_range, parse_range_request

BIG = 2**63 - 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0-0", (0, 0)),
        ("0-1023", (0, 1023)),
        ("1024-2047", (1024, 2047)),
        ("bytes 0-1023", (0, 1023)),
        ("bytes=0-1023", (0, 1023)),
        ("bytes 0-1023/2048", (0, 1023)),
        ("bytes 0-1023/1024", (0, 1023)),
        ("bytes 0-1023/*", (0, 1023)),
        ("bytes=5-9/10", (5, 9)),
        ("5-9/10", (5, 9)),
        ("Bytes 0-9", (0, 9)),
        ("BYTES=0-9", (0, 9)),
        ("  0-9  ", (0, 9)),
        ("bytes  0 - 9", (0, 9)),
        ("bytes = 0-9", (0, 9)),
        ("007-010", (7, 10)),
        (f"0-{BIG}", (0, BIG)),
        (f"{BIG}-{BIG}", (BIG, BIG)),
    ],
)
def test_parse_content_range(value: str, expected: tuple[int, int]) -> None:
    assert parse_content_range(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "malformed"),
        ("   ", "malformed"),
        ("0", "malformed"),
        ("-", "malformed"),
        ("0-", "malformed"),
        ("-5", "malformed"),
        ("-5-10", "malformed"),
        ("5--10", "malformed"),
        ("5-+10", "malformed"),
        ("+5-10", "malformed"),
        ("0x10-0x20", "malformed"),
        ("1_0-2_0", "malformed"),
        ("1.5-2", "malformed"),
        ("1e3-2e3", "malformed"),
        ("\u0661-\u0662", "malformed"),  # Arabic-Indic digits, which int() accepts
        ("０-９", "malformed"),  # fullwidth digits
        ("bytes", "malformed"),
        ("bytes 0-9/", "malformed"),
        ("bytes 0-9/abc", "malformed"),
        ("bytes 0-9/-1", "malformed"),
        ("items 0-9", "malformed"),
        ("bytes:0-9", "malformed"),
        ("bytes0-9", "malformed"),
        ("0-9,20-29", "malformed"),
        ("0-9\x00", "malformed"),
        ("0-9\n10-19", "malformed"),
        ("bytes */100", "malformed"),
        ("10-5", "end 5 is before start 10"),
        ("bytes 10-9", "before start"),
        ("bytes 0-10/10", "not below the total"),
        ("bytes 0-10/0", "not below the total"),
        ("0-" + "9" * 19, "out of range"),
        ("0-" + "9" * 20, "out of range"),
        ("0-" + "9" * 10_000, "out of range"),
        (f"0-{BIG + 1}", "out of range"),
        (f"{BIG + 1}-{BIG + 2}", "out of range"),
        ("0-5/" + "9" * 50, "out of range"),
        ("x" * 1000, "malformed"),
    ],
)
def test_parse_content_range_invalid(value: str, message: str) -> None:
    with pytest.raises(RangeInvalidError, match=message) as info:
        parse_content_range(value)
    assert len(info.value.message) < 200


@pytest.mark.parametrize(
    ("size", "expected"),
    [(0, "0-0"), (1, "0-0"), (2, "0-1"), (1024, "0-1023"), (BIG, f"0-{BIG - 1}"), (-5, "0-0")],
)
def test_format_upload_range(size: int, expected: str) -> None:
    assert format_upload_range(size) == expected


def test_upload_range_round_trips_with_content_range() -> None:
    assert parse_content_range(format_upload_range(4096)) == (0, 4095)


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        ("bytes=0-99", 1000, (0, 99)),
        ("bytes=100-", 1000, (100, 999)),
        ("bytes=-100", 1000, (900, 999)),
        ("bytes=-5000", 1000, (0, 999)),
        ("bytes=0-5000", 1000, (0, 999)),
        ("bytes=999-999", 1000, (999, 999)),
        ("bytes=0-0", 1, (0, 0)),
        ("BYTES = 1 - 2", 10, (1, 2)),
        # Ignored: serve the whole blob.
        ("bytes=0-99,200-299", 1000, None),
        ("items=0-9", 1000, None),
        ("bytes=", 1000, None),
        ("bytes=-", 1000, None),
        ("bytes=10-5", 1000, None),
        ("0-99", 1000, None),
        ("bytes=a-b", 1000, None),
        ("bytes=\u0661-\u0662", 1000, None),
        ("bytes=0-" + "9" * 30, 1000, None),
        ("bytes=" + "9" * 30 + "-", 1000, None),
        ("", 1000, None),
    ],
)
def test_parse_range_request(value: str, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range_request(value, size) == expected


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("bytes=1000-", 1000),
        ("bytes=1000-2000", 1000),
        ("bytes=0-", 0),
        ("bytes=-0", 1000),
        ("bytes=-10", 0),
    ],
)
def test_parse_range_request_unsatisfiable(value: str, size: int) -> None:
    with pytest.raises(RangeInvalidError):
        parse_range_request(value, size)

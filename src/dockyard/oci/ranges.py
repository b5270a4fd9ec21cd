"""Byte ranges in the blob-upload and blob-download protocol."""

from __future__ import annotations

import re

from dockyard.errors import RangeInvalidError

__all__ = ["format_upload_range", "parse_content_range", "parse_range_request"]

# Offsets beyond a signed 64-bit integer are refused before int() sees them.
_MAX_DIGITS = 19
_MAX_OFFSET = 2**63 - 1
_CONTENT_RANGE = re.compile(
    r"(?:bytes(?:[ \t]+|[ \t]*=[ \t]*))?([0-9]+)[ \t]*-[ \t]*([0-9]+)(?:[ \t]*/[ \t]*([0-9]+|\*))?",
    re.IGNORECASE,
)
_RANGE_REQUEST = re.compile(r"bytes[ \t]*=[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)", re.IGNORECASE)


def _offset(text: str, what: str, header: str) -> int:
    if len(text) > _MAX_DIGITS or int(text) > _MAX_OFFSET:
        raise RangeInvalidError(f"{header}: {what} {text[:30]} is out of range")
    return int(text)


def parse_content_range(value: str) -> tuple[int, int]:
    """Parse the ``Content-Range`` of a PATCH chunk into ``(start, end)``, end inclusive.

    Accepts ``start-end``, ``bytes start-end``, ``bytes=start-end``, each
    optionally followed by ``/total`` or ``/*``. Raises
    :class:`RangeInvalidError` for anything malformed, negative, an end before
    its start, or an end beyond a given total.
    """
    shown = repr(value if len(value) <= 60 else value[:57] + "...")
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match is None:
        raise RangeInvalidError(
            f"Content-Range {shown} is malformed; expected '<start>-<end>' "
            "(inclusive, non-negative byte offsets)"
        )
    start = _offset(match.group(1), "start", "Content-Range")
    end = _offset(match.group(2), "end", "Content-Range")
    if end < start:
        raise RangeInvalidError(f"Content-Range {shown}: end {end} is before start {start}")
    total = match.group(3)
    if total is not None and total != "*" and end >= _offset(total, "total", "Content-Range"):
        raise RangeInvalidError(f"Content-Range {shown}: end {end} is not below the total")
    return start, end


def format_upload_range(size: int) -> str:
    """The ``Range`` header of an upload holding ``size`` bytes: ``0-<size-1>``.

    An empty upload also reports ``0-0``, as the reference registry does;
    clients resume from ``Docker-Upload-Offset``/the upload's size, not
    from this header alone.
    """
    return f"0-{max(size - 1, 0)}"


def parse_range_request(value: str, size: int) -> tuple[int, int] | None:
    """Resolve a GET ``Range`` header against a blob of ``size`` bytes.

    Returns the inclusive ``(start, end)`` to serve (end clamped to the
    blob), or ``None`` when the header should be ignored and the whole blob
    served: malformed, several ranges, or a unit other than bytes (RFC 9110
    section 14.2 lets a server ignore those). Raises
    :class:`RangeInvalidError` when the range cannot be satisfied (HTTP 416).
    """
    match = _RANGE_REQUEST.fullmatch(value.strip())
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if len(first) > _MAX_DIGITS or len(last) > _MAX_DIGITS:
        return None
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeInvalidError(f"range {value.strip()!r} cannot be satisfied")
        return max(size - suffix, 0), size - 1
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeInvalidError(
            f"range {value.strip()!r} starts beyond the end of the {size}-byte blob"
        )
    end = min(int(last), size - 1) if last else size - 1
    return start, end

"""The log line format of ``dockyard serve`` (``dockyard/logs.py``): the per-second
timestamp cache must write what ``logging.Formatter`` would."""

from __future__ import annotations

import logging

from dockyard.logs import _DATE_FORMAT, _Formatter

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _record(created: float, message: str) -> logging.LogRecord:
    record = logging.LogRecord("dockyard.access", logging.INFO, __file__, 1, message, None, None)
    record.created = created
    return record


def test_cached_timestamps_match_the_standard_formatter() -> None:
    ours, standard = _Formatter(FORMAT), logging.Formatter(FORMAT, _DATE_FORMAT)
    # Within one second, across a second, back to an earlier second, across a day.
    for created in (
        1_700_000_000.1,
        1_700_000_000.9,
        1_700_000_001.0,
        1_700_000_000.5,
        1_700_086_400.2,
    ):
        record = _record(created, f"line at {created}")
        assert ours.format(record) == standard.format(record)

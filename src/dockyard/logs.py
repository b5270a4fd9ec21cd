"""Logging setup: one line per record on stderr, level from settings."""

from __future__ import annotations

import logging
import sys
import time

_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


class _Formatter(logging.Formatter):
    """``logging.Formatter`` that formats each second's timestamp once: every request
    writes an access-log line, and ``strftime`` was most of the cost of writing it."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt, _DATE_FORMAT)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(datefmt or _DATE_FORMAT, self.converter(second))
            self._second = second
        return self._stamp


def configure_logging(level: str) -> None:
    # What the logging HOWTO's "Optimization" section says to switch off when no
    # formatter uses it: the caller's file and line (a stack walk per record),
    # thread and multiprocessing names. The format above uses none, and the access
    # log writes a record per request.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # SQLAlchemy and the server libraries are loud at debug; keep them at warning.
    for noisy in ("sqlalchemy", "aiosqlite", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))

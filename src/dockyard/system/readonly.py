"""Harbor's read-only mode (the ``read_only`` configuration item).

While it is on, every change through ``/v2/`` and ``/api/v2.0/`` is refused with
Harbor's ``DENIED`` error (403) and its message; reads, pulls, logins and
``PUT /configurations`` (to switch it off) still work, and garbage collection and
retention remove nothing. The flag lives in the ``properties`` table, so every node
sees it; each process keeps what it read for ``CACHE_SECONDS`` so a request costs no
query, and the process that changes it forgets its copy at once.
"""

from __future__ import annotations

import time
import weakref

from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.engine import Database
from dockyard.errors import DeniedError
from dockyard.system import config

MESSAGE = "The system is in read only mode. Any modification is prohibited."
CACHE_SECONDS = 2.0
"""How stale another node's view of the flag may be."""

_cached: weakref.WeakKeyDictionary[Database, tuple[float, bool]] = weakref.WeakKeyDictionary()
"""Per database (a process may serve more than one app, as the tests do)."""


class ReadOnlyError(DeniedError):
    """A change refused because the system is in read-only mode: 403 ``DENIED`` on both
    faces, as Harbor's read-only middleware answers."""

    harbor_code = "DENIED"


def forget() -> None:
    """Drop this process's copy (after an administrator changes the item)."""
    _cached.clear()


async def is_on(db: Database) -> bool:
    """The ``read_only`` item, at most ``CACHE_SECONDS`` old."""
    now = time.monotonic()
    seen = _cached.get(db)
    if seen is not None and now - seen[0] < CACHE_SECONDS:
        return seen[1]
    async with db.read() as session:
        on = await read(session)
    _cached[db] = (now, on)
    return on


async def read(session: AsyncSession) -> bool:
    """The ``read_only`` item, read now (jobs that are about to delete ask this)."""
    return await config.value(session, config.READ_ONLY) is True


async def check(db: Database) -> None:
    """Raise ``ReadOnlyError`` while read-only mode is on."""
    if await is_on(db):
        raise ReadOnlyError(MESSAGE)

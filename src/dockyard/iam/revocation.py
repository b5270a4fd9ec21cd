"""The revocation counter: one number that moves whenever access is taken away.

Bearer tokens are checked against the account and the project membership they
were granted from on every ``/v2/`` request (``IdentityService.recheck``); to keep
that cheap, each process remembers its decisions until this counter moves.

- ``bump(session)`` is called in the same transaction as the change (a robot
  disabled, deleted or given a new secret or permissions; a user deleted or given
  a new password or fewer rights; a member removed or demoted; a project made
  private or deleted). After the commit, this process drops its decisions at once.
- Other processes and nodes read the counter at most every
  ``auth_recheck_seconds`` (one tiny query, not one per request) and drop theirs
  when it has moved.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from sqlalchemy import event, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from dockyard.iam.models import AuthRevision

_ROW = 1
_HOOKED = "dockyard.auth_revision_hooked"
# engine -> how many revocations this process has committed through it. Keyed by
# engine (not a global number) so that two apps in one process stay apart.
_local: WeakKeyDictionary[Engine, int] = WeakKeyDictionary()


def local_revocations(engine: Engine) -> int:
    """How many revocations this process committed through ``engine`` (a cheap change marker)."""
    return _local.get(engine, 0)


def _committed(session: Session) -> None:
    session.info.pop(_HOOKED, None)
    engine = session.get_bind()
    if isinstance(engine, Engine):
        _local[engine] = _local.get(engine, 0) + 1


async def bump(session: AsyncSession) -> None:
    """Count one revocation, in the caller's transaction."""
    moved = await session.execute(
        update(AuthRevision)
        .where(AuthRevision.id == _ROW)
        .values(revision=AuthRevision.revision + 1)
        .execution_options(synchronize_session=False)
    )
    if not getattr(moved, "rowcount", 1):
        session.add(AuthRevision(id=_ROW, revision=1))
        await session.flush()
    sync = session.sync_session
    if not sync.info.get(_HOOKED):
        sync.info[_HOOKED] = True
        event.listen(sync, "after_commit", _committed, once=True)


async def current(conn: AsyncConnection) -> int:
    """The counter as the database has it now (0 before any revocation)."""
    value = await conn.scalar(select(AuthRevision.revision).where(AuthRevision.id == _ROW))
    return int(value or 0)

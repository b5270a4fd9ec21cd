"""Per-project storage quotas: charging new blobs, releasing unneeded ones, the limits.

Usage is the size of the unique blobs a project holds (its ``project_blob``
links): a layer shared by two repositories of a project counts once, a layer
shared by two projects counts in each, as Harbor counts. The registry tells
``charge`` about blobs new to a project inside the transaction that links them;
a refusal rolls the link back. Removing an artifact releases the blobs no other
artifact of its project needs; a released layer stays readable in its repository
(OCI keeps blobs until they are deleted), so a manifest pushed later that names
it again is charged for it again (``charge_manifest``). Blobs uploaded but never
referenced by a manifest stay counted until garbage collection removes them.

Lock order: every change of a project's usage takes its quota row before it
deletes any registry row, so pushes and removals of one project never deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit import service as audit
from dockyard.audit.events import Actor, AuditEvent
from dockyard.db.base import utcnow
from dockyard.db.listing import PageRequest, fetch_page, parse_sort
from dockyard.errors import BadRequestError, DeniedError, NotFoundError, UnauthorizedError
from dockyard.iam.policy import Action, Principal, ProjectContext, Resource, can
from dockyard.quota import repository as repo
from dockyard.quota import schemas
from dockyard.quota.models import Quota
from dockyard.registry.hooks import BlobsLinked, ManifestPush, ManifestRemoval
from dockyard.system import config

STORAGE = "storage"
"""The one resource Dockyard limits (Harbor's ``ResourceList`` key)."""
MAX_BYTES = 2**63 - 1
_PENDING_RELEASE = "dockyard.quota.pending_release"
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def human_size(size: int) -> str:
    """``10485760`` as ``10.0 MiB``; ``-1`` as ``unlimited``."""
    if size < 0:
        return "unlimited"
    value = float(size)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _amount(size: int) -> str:
    text = human_size(size)
    return text if size < 1024 else f"{text} ({size} bytes)"


def check_limit(value: int, what: str) -> int:
    """``value`` if it is a storage limit (-1 unlimited, or bytes); else a 400."""
    if value < -1 or value > MAX_BYTES:
        raise BadRequestError(f"{what} must be -1 (unlimited) or a number of bytes, not {value}")
    return value


async def default_limit(session: AsyncSession) -> int:
    """The limit of a new project: the ``storage_per_project`` configuration item."""
    return int(await config.value(session, config.STORAGE_PER_PROJECT))


# --- the registry's side -------------------------------------------------------------------


async def create_project_quota(
    session: AsyncSession, project_id: int, storage_limit: int | None = None
) -> None:
    """The quota row of a new project: ``storage_limit``, or the configured default."""
    hard = await default_limit(session) if storage_limit is None else storage_limit
    await repo.insert_quota(session, project_id, check_limit(hard, "storage_limit"))


async def charge(session: AsyncSession, linked: BlobsLinked) -> None:
    """Count blobs new to a project, or refuse (``DeniedError``) if the limit forbids it."""
    size = sum(blob_size for _, blob_size in linked.blobs)
    if size == 0 or await repo.charge(session, linked.project_id, size):
        return  # empty blobs cost nothing, even in a project over its limit
    quota = await repo.find_quota(session, linked.project_id)
    if quota is None:
        # A project from before quotas existed: give it its row now, counting what it
        # already holds (but not these blobs, whose links this transaction made).
        new_ids = [blob_id for blob_id, _ in linked.blobs]
        await repo.insert_quota(
            session, linked.project_id, await default_limit(session), excluding=new_ids
        )
        if await repo.charge(session, linked.project_id, size):
            return
        quota = await repo.find_quota(session, linked.project_id)
        assert quota is not None
    if not await config.value(session, config.QUOTA_PER_PROJECT_ENABLE):
        # Limits are switched off (Harbor's quota_per_project_enable): count, never refuse.
        await repo.charge(session, linked.project_id, size, enforce=False)
        return
    project = linked.repository.partition("/")[0]
    raise DeniedError(
        f"quota exceeded: project {project} uses {_amount(quota.used_storage)} of its "
        f"{_amount(quota.hard_storage)} storage limit; this request needs {_amount(size)} more"
    )


async def charge_manifest(session: AsyncSession, push: ManifestPush) -> None:
    """Before a manifest's tag moves: count the blobs it needs that the project no longer
    held (a layer freed by a deleted artifact, still readable in its repository), or
    refuse. The quota row is locked first, so a concurrent removal either sees this
    artifact or has already freed what it links again here.

    An artifact already in the repository holds its blobs in the project, so a
    re-push or a tag move has nothing to charge: no lock, no query on that path."""
    if not push.artifact_is_new:
        return
    if session.get_bind().dialect.name != "sqlite":  # SQLite: the write lock is held already
        await repo.find_quota(session, push.project_id, for_update=True)
    linked = await repo.link_manifest_blobs(session, push.project_id, push.digest)
    if linked:
        await charge(
            session, BlobsLinked(push.actor, push.project_id, push.repository, tuple(linked))
        )


async def hold_release(session: AsyncSession, removal: ManifestRemoval) -> None:
    """Before an artifact goes: lock the project's quota and note the blobs it needed
    (their ``artifact_blob`` rows may go with it)."""
    if not removal.artifact_removed:
        return
    await repo.find_quota(session, removal.project_id, for_update=True)
    pending: dict[int, dict[int, int]] = session.info.setdefault(_PENDING_RELEASE, {})
    pending[removal.artifact_id] = await repo.blobs_of_manifest(session, removal.digest)


async def release(session: AsyncSession, removal: ManifestRemoval) -> None:
    """After an artifact went: unlink from its project the blobs no artifact of the
    project needs any more, and take their sizes off its usage."""
    if not removal.artifact_removed:
        return
    pending: dict[int, dict[int, int]] = session.info.get(_PENDING_RELEASE, {})
    blobs = pending.pop(removal.artifact_id, None)
    if not blobs:
        return
    needed = await repo.blobs_still_needed(session, removal.project_id, blobs.keys())
    unneeded = [blob_id for blob_id in blobs if blob_id not in needed]
    gone = await repo.unlink_project_blobs(session, removal.project_id, unneeded)
    if not gone:
        return
    if await repo.find_quota(session, removal.project_id) is None:
        # Counted from the links that remain, so nothing to take off.
        await repo.insert_quota(session, removal.project_id, await default_limit(session))
        return
    await repo.refund(session, removal.project_id, sum(blobs[blob_id] for blob_id in gone))


# --- reading -------------------------------------------------------------------------------


async def project_storage(session: AsyncSession, project_id: int) -> tuple[int, int]:
    """(limit, usage) of a project; for a project without a row yet, the default limit and
    its usage recomputed."""
    quota = await repo.find_quota(session, project_id)
    if quota is not None:
        return quota.hard_storage, quota.used_storage
    return await default_limit(session), await repo.usage_of(session, project_id)


async def check_room(session: AsyncSession, project_id: int, project: str, size: int) -> None:
    """Refuse (``DeniedError``, as ``charge`` words it) ``size`` more bytes the project's
    limit has no room for: for a caller that must say so before it has the bytes to link
    (a proxy cache about to stream a blob). ``charge``, when the bytes are linked, is
    what counts; this reads and locks nothing."""
    if size == 0 or not await config.value(session, config.QUOTA_PER_PROJECT_ENABLE):
        return
    hard, used = await project_storage(session, project_id)
    if hard >= 0 and used + size > hard:
        raise DeniedError(
            f"quota exceeded: project {project} uses {_amount(used)} of its "
            f"{_amount(hard)} storage limit; this request needs {_amount(size)} more"
        )


def may_read_project_quota(principal: Principal, context: ProjectContext) -> bool:
    return can(principal, Action.READ, Resource.QUOTA, context)


def require_quota(principal: Principal, action: Action) -> None:
    if can(principal, action, Resource.QUOTA, None):
        return
    if principal.is_anonymous:
        raise UnauthorizedError("authentication required")
    raise DeniedError(f"{principal.name} may not {action} quotas")


def _view(quota: Quota, project_id: int, name: str, owner: str | None) -> schemas.Quota:
    return schemas.Quota(
        id=quota.id,
        ref=schemas.QuotaRefObject(id=project_id, name=name, owner_name=owner),
        hard={STORAGE: quota.hard_storage},
        used={STORAGE: quota.used_storage},
        creation_time=quota.creation_time,
        update_time=quota.update_time,
    )


@dataclass(frozen=True, slots=True)
class QuotaQuery:
    """``listQuotas`` filters."""

    reference: str | None = None
    reference_id: str | None = None
    sort: str | None = None


_SORT_COLUMNS: dict[str, ColumnElement[Any]] = {
    "hard.storage": Quota.hard_storage.expression,
    "used.storage": Quota.used_storage.expression,
    "creation_time": Quota.creation_time.expression,
    "update_time": Quota.update_time.expression,
    "id": Quota.id.expression,
}


async def needs_backfill(session: AsyncSession) -> bool:
    """Whether some live project has no quota row yet (created before quotas existed)."""
    return bool(await repo.projects_without_quota(session))


async def backfill(session: AsyncSession) -> int:
    """Give every live project without a quota row one (default limit, usage recomputed)."""
    missing = await repo.projects_without_quota(session)
    hard = await default_limit(session)
    for project_id in missing:
        await repo.insert_quota(session, project_id, hard)
    return len(missing)


async def list_quotas(
    session: AsyncSession, principal: Principal, query: QuotaQuery, page: PageRequest
) -> tuple[list[schemas.Quota], int]:
    """``listQuotas``: system ``quota:list`` (administrators)."""
    require_quota(principal, Action.LIST)
    order = parse_sort(query.sort, _SORT_COLUMNS)
    stmt = repo.quota_listing()
    if query.reference:
        stmt = stmt.where(Quota.reference == _text(query.reference, "reference"))
    if query.reference_id:
        stmt = stmt.where(Quota.reference_id == _text(query.reference_id, "reference_id"))
    rows, total = await fetch_page(session, stmt, page, order, Quota.id.asc())
    return [_view(*repo.as_quota_row(row)) for row in rows], total


def _text(value: str, what: str) -> str:
    if "\x00" in value or len(value) > 255:
        raise BadRequestError(f"{what} must be at most 255 characters and hold no NUL")
    return value


async def get_quota(session: AsyncSession, principal: Principal, quota_id: int) -> schemas.Quota:
    """``getQuota``: system ``quota:read`` (administrators)."""
    require_quota(principal, Action.READ)
    found = await repo.quota_with_ref(session, quota_id)
    if found is None:
        raise NotFoundError(f"quota {quota_id} not found")
    return _view(*found)


def requested_limit(req: schemas.QuotaUpdateReq) -> int:
    """The storage limit an ``updateQuota`` body asks for; a 400 for anything else."""
    if not req.hard:
        raise BadRequestError('hard is required, e.g. {"hard": {"storage": 10737418240}}')
    unknown = sorted(set(req.hard) - {STORAGE})
    if unknown:
        raise BadRequestError(
            f"only storage can be limited, not {', '.join(repr(k[:64]) for k in unknown)}"
        )
    return check_limit(req.hard[STORAGE], "hard.storage")


async def update_quota(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    quota_id: int,
    req: schemas.QuotaUpdateReq,
) -> None:
    """``updateQuota``: system ``quota:update``. A limit below the current usage is
    accepted (as Harbor does): what is stored stays, and further pushes are refused."""
    require_quota(principal, Action.UPDATE)
    hard = requested_limit(req)
    found = await repo.quota_with_ref(session, quota_id)
    if found is None:
        raise NotFoundError(f"quota {quota_id} not found")
    _, project_id, name, _ = found
    locked = await repo.find_quota(session, project_id, for_update=True)
    assert locked is not None
    before = locked.hard_storage
    locked.hard_storage = hard
    locked.update_time = utcnow()
    await session.flush()
    await audit.record(
        session,
        actor,
        AuditEvent(
            "update",
            "quota",
            name,
            project_id,
            f"storage limit of project {name}: {human_size(before)} -> {human_size(hard)}",
        ),
    )


# --- recomputing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageCheck:
    """A project's stored usage against the one recomputed from its blob links."""

    project_id: int
    project: str
    stored: int | None
    """None when the project has no quota row yet."""
    recomputed: int

    @property
    def agrees(self) -> bool:
        return self.stored == self.recomputed

    @property
    def difference(self) -> int:
        return (self.stored or 0) - self.recomputed


async def check_usage(
    session: AsyncSession, projects: Sequence[tuple[int, str]]
) -> list[UsageCheck]:
    """Stored and recomputed usage of ``projects`` ((id, name) pairs), from one snapshot."""
    numbers = await repo.stored_and_recomputed(session, [pid for pid, _ in projects])
    checks = []
    for project_id, name in projects:
        stored, recomputed = numbers.get(project_id, (None, 0))
        checks.append(UsageCheck(project_id, name, stored, recomputed))
    return checks


async def fix_usage(session: AsyncSession, project_id: int) -> int:
    """Store the project's recomputed usage (its row locked first, so a concurrent push
    or removal is counted before or after, never lost); returns the new usage."""
    quota = await repo.find_quota(session, project_id, for_update=True)
    if quota is None:
        await repo.insert_quota(session, project_id, await default_limit(session))
        quota = await repo.find_quota(session, project_id)
        assert quota is not None
        return quota.used_storage
    used = await repo.usage_of(session, project_id)
    await repo.set_usage(session, quota.id, used)
    return used

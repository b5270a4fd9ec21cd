"""CVE allowlists: the system's (``project_id`` 0) and each project's (Harbor's shape).

A pull of a vulnerable artifact is refused unless every finding at or above the project's
``severity`` is in the allowlist in force: the project's own, or the system's when the
project's ``reuse_sys_cve_allowlist`` is ``"true"``. An allowlist whose ``expires_at``
(Unix seconds) has passed counts as empty. The pull policy (``scan/policy.py``) reads the
rows in the statement that decides the pull; this module writes and shows them.
"""

from __future__ import annotations

import json
import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit import service as audit
from dockyard.audit.events import Actor, AuditEvent
from dockyard.errors import BadRequestError, DeniedError, UnauthorizedError
from dockyard.iam.policy import Principal
from dockyard.projects import schemas
from dockyard.projects.models import CVEAllowlistRow

SYSTEM = 0
"""The system allowlist's ``project_id``."""
MAX_ITEMS = 10_000
_CVE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,254}$")
"""An advisory id: ``CVE-2024-1234``, ``GHSA-xxxx-xxxx-xxxx``, ``DSA-1234-1``, ``GO-2024-1``…"""
_MAX_EXPIRY = 2**62


def validate(req: schemas.CVEAllowlist) -> tuple[list[str], int | None]:
    """The ids (trimmed, in order, each once) and the expiry of a request; else a 400."""
    items = req.items or []
    if len(items) > MAX_ITEMS:
        raise BadRequestError(f"a CVE allowlist holds at most {MAX_ITEMS} items")
    ids: list[str] = []
    seen: set[str] = set()
    for item in items:
        cve = (item.cve_id or "").strip()
        if not cve:
            raise BadRequestError("empty cve_id in the CVE allowlist")
        if not _CVE_ID.match(cve):
            raise BadRequestError(f"invalid cve_id {cve[:64]!r} in the CVE allowlist")
        if cve in seen:
            raise BadRequestError(f"duplicate cve_id {cve!r} in the CVE allowlist")
        seen.add(cve)
        ids.append(cve)
    expires = req.expires_at
    if expires is not None and not 0 <= expires <= _MAX_EXPIRY:
        raise BadRequestError("expires_at must be Unix seconds (or null: never)")
    return ids, expires


async def store(
    session: AsyncSession, project_id: int, ids: list[str], expires_at: int | None
) -> None:
    row = await session.scalar(
        select(CVEAllowlistRow).where(CVEAllowlistRow.project_id == project_id)
    )
    if row is None:
        row = CVEAllowlistRow(project_id=project_id)
        session.add(row)
    row.items = json.dumps(ids)
    row.expires_at = expires_at
    await session.flush()


def may_change_system(principal: Principal) -> None:
    """Only system administrators change the system allowlist (401 signed out, else 403)."""
    if principal.is_anonymous:
        raise UnauthorizedError("authentication required")
    if not principal.sysadmin:
        raise DeniedError(f"{principal.name} may not change the system CVE allowlist")


async def put_system(
    session: AsyncSession, principal: Principal, actor: Actor, req: schemas.CVEAllowlist
) -> None:
    """``putSystemCVEAllowlist``: replaces the system allowlist (system administrators only;
    the API and the console both call this)."""
    may_change_system(principal)
    ids, expires_at = validate(req)
    await store(session, SYSTEM, ids, expires_at)
    await audit.record(
        session,
        actor,
        AuditEvent("update", "system_cve_allowlist", "system", 0, "update CVE allowlist"),
    )


async def view(session: AsyncSession, project_id: int) -> schemas.CVEAllowlist:
    """Harbor's ``CVEAllowlist``; an allowlist never written is empty (id 0)."""
    row = await session.scalar(
        select(CVEAllowlistRow).where(CVEAllowlistRow.project_id == project_id)
    )
    if row is None:
        return schemas.CVEAllowlist(id=0, project_id=project_id, items=[])
    return schemas.CVEAllowlist(
        id=row.id,
        project_id=project_id,
        expires_at=row.expires_at,
        items=[schemas.CVEAllowlistItem(cve_id=cve) for cve in ids_of(row.items)],
        creation_time=row.creation_time.isoformat(),
        update_time=row.update_time.isoformat(),
    )


def ids_of(text: str | None) -> list[str]:
    """The stored JSON list of ids (anything else: none)."""
    try:
        found = json.loads(text or "[]")
    except ValueError:
        return []
    return [str(cve) for cve in found] if isinstance(found, list) else []

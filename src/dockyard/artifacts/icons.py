"""Artifact icons (Harbor's ``GET /icons/{digest}``).

An artifact's ``icon`` names a blob by digest. The icon is served only when an
artifact the caller may see names it, so the endpoint cannot be used to read an
arbitrary blob; its bytes are read with no transaction open and capped.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.errors import BadRequestError, DigestInvalidError, NotFoundError, ObjectNotFoundError
from dockyard.iam.policy import Principal
from dockyard.oci.digest import Digest
from dockyard.projects.models import Project
from dockyard.projects.service import visible_projects
from dockyard.registry.models import Artifact
from dockyard.storage import ObjectStore, blob_key

MAX_ICON_BYTES = 1024 * 1024
"""Larger blobs are not icons: refused rather than read."""

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


@dataclass(frozen=True, slots=True)
class Icon:
    content_type: str
    content: str
    """Base64 of the image bytes."""


async def find_icon(session: AsyncSession, principal: Principal, raw_digest: str) -> str:
    """The icon's digest when an artifact the caller may see names it; else 404."""
    try:
        digest = str(Digest.parse(raw_digest))
    except DigestInvalidError as exc:
        raise BadRequestError(exc.message) from None
    stmt = (
        select(Artifact.id)
        .join(Project, Project.project_id == Artifact.project_id)
        .where(Artifact.icon == digest)
        .limit(1)
    )
    visible = visible_projects(principal)
    if visible is not None:
        stmt = stmt.where(visible)
    if await session.scalar(stmt) is None:
        raise NotFoundError(f"no icon {digest}")
    return digest


def content_type_of(data: bytes) -> str | None:
    for signature, content_type in _SIGNATURES:
        if data.startswith(signature):
            return content_type
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    head = data[:256].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096].lower():
        return "image/svg+xml"
    return None


async def icon_content(storage: ObjectStore, digest: str) -> Icon:
    """The icon ``find_icon`` allowed, as Harbor's ``Icon`` (type and base64 bytes)."""
    key = blob_key(digest)
    info = await storage.stat(key)
    if info is None:
        raise NotFoundError(f"the icon {digest} is not in storage")
    if info.size > MAX_ICON_BYTES:
        raise NotFoundError(f"the icon {digest} is larger than {MAX_ICON_BYTES} bytes")
    try:
        data = await storage.read_bytes(key)
    except ObjectNotFoundError:
        raise NotFoundError(f"the icon {digest} is not in storage") from None
    content_type = content_type_of(data)
    if content_type is None:
        raise NotFoundError(f"the blob {digest} is not an image")
    return Icon(content_type, base64.b64encode(data).decode("ascii"))

"""The one seam where policies and records plug into the registry's writes and reads.

Quotas, tag immutability, the audit log and (later) vulnerability and signature
gates all need to see a manifest push or removal *inside* its transaction, so
that a refusal rolls the whole change back and a record commits with it. The
registry service calls every registered ``RegistryHooks`` at these points; a
hook refuses by raising an ``AppError`` (``DeniedError`` for policy refusals).
``create_app`` decides which hooks exist; the registry knows none by name.

Every method has a no-op default in ``NoHooks``, so a hook implements only the
points it cares about.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit.events import SYSTEM_ACTOR, Actor
from dockyard.errors import DeniedError

__all__ = [
    "SYSTEM_ACTOR",
    "AccessRefused",
    "Actor",
    "BlobsLinked",
    "Change",
    "ManifestPull",
    "ManifestPush",
    "ManifestRemoval",
    "NoHooks",
    "RegistryHooks",
]


@dataclass(frozen=True, slots=True)
class ManifestPush:
    actor: Actor
    project_id: int
    repository_id: int
    repository: str
    artifact_id: int
    digest: str
    tag: str | None
    """The tag being pushed (None for a push by digest)."""
    previous_digest: str | None
    """What ``tag`` pointed at before this push (None: a new tag, or a push by digest)."""
    artifact_is_new: bool
    subject: str | None = None
    """The digest the manifest names as its ``subject`` (a referrer: a signature, an SBOM);
    None for other manifests and for pushes that carry no manifest (a copy, a new tag)."""


@dataclass(frozen=True, slots=True)
class ManifestRemoval:
    actor: Actor
    project_id: int
    repository_id: int
    repository: str
    artifact_id: int
    digest: str
    tags: tuple[str, ...]
    """The tags that go: one for a tag deletion, all of the artifact's for an artifact."""
    artifact_removed: bool
    """True when the artifact itself goes (not just a tag)."""


@dataclass(frozen=True, slots=True)
class BlobsLinked:
    """Blobs newly counted in a project (an upload completed, a mount, a manifest pushed)."""

    actor: Actor
    project_id: int
    repository: str
    blobs: tuple[tuple[int, int], ...]
    """(blob id, size) of each blob that was not in the project before."""


@dataclass(frozen=True, slots=True)
class ManifestPull:
    actor: Actor
    repository: str
    digest: str
    tag: str | None


@dataclass(frozen=True, slots=True)
class AccessRefused:
    """A ``/v2/`` request refused because the caller may not do it (a token without the
    scope, a signed-in user without the permission); not a request for credentials."""

    actor: Actor
    repository: str
    actions: tuple[str, ...]
    """The actions refused (``pull``, ``push``, ``delete``)."""
    reason: str


Change = ManifestPush | ManifestRemoval | BlobsLinked
"""A change hooks may refuse."""


class NoHooks:
    """Every hook point, doing nothing; subclass and override what you need."""

    async def before_manifest_push(self, session: AsyncSession, push: ManifestPush) -> None:
        """Inside the push's transaction, before the tag moves; raise to refuse."""

    async def after_manifest_push(self, session: AsyncSession, push: ManifestPush) -> None:
        """Inside the push's transaction, after every row is written."""

    async def before_manifest_removal(
        self, session: AsyncSession, removal: ManifestRemoval
    ) -> None:
        """Inside the removal's transaction, before rows go; raise to refuse."""

    async def after_manifest_removal(self, session: AsyncSession, removal: ManifestRemoval) -> None:
        """Inside the removal's transaction, after the rows went."""

    async def blobs_linked(self, session: AsyncSession, linked: BlobsLinked) -> None:
        """Inside the transaction that counts new blobs in a project; raise to refuse."""

    def manifest_pulled(self, pull: ManifestPull) -> None:
        """After a manifest was served; must not block (queue work for later)."""

    def change_refused(self, change: Change, reason: str) -> None:
        """A hook refused ``change`` (its transaction will roll back); must not block,
        and must not write in the failing transaction (queue work for later)."""

    def access_refused(self, refusal: AccessRefused) -> None:
        """A request was refused for want of permission; must not block."""

    async def close(self) -> None:
        """When the app stops: finish queued work."""


class RegistryHooks(NoHooks):
    """All registered hooks, called in order; the registry service holds one of these."""

    def __init__(self, hooks: Sequence[NoHooks] = ()) -> None:
        self.hooks = tuple(hooks)

    async def before_manifest_push(self, session: AsyncSession, push: ManifestPush) -> None:
        try:
            for hook in self.hooks:
                await hook.before_manifest_push(session, push)
        except DeniedError as refusal:
            self.change_refused(push, refusal.message)
            refusal.audited = True
            raise

    async def after_manifest_push(self, session: AsyncSession, push: ManifestPush) -> None:
        for hook in self.hooks:
            await hook.after_manifest_push(session, push)

    async def before_manifest_removal(
        self, session: AsyncSession, removal: ManifestRemoval
    ) -> None:
        try:
            for hook in self.hooks:
                await hook.before_manifest_removal(session, removal)
        except DeniedError as refusal:
            self.change_refused(removal, refusal.message)
            refusal.audited = True
            raise

    async def after_manifest_removal(self, session: AsyncSession, removal: ManifestRemoval) -> None:
        for hook in self.hooks:
            await hook.after_manifest_removal(session, removal)

    async def blobs_linked(self, session: AsyncSession, linked: BlobsLinked) -> None:
        if not linked.blobs:
            return
        try:
            for hook in self.hooks:
                await hook.blobs_linked(session, linked)
        except DeniedError as refusal:
            self.change_refused(linked, refusal.message)
            refusal.audited = True
            raise

    def manifest_pulled(self, pull: ManifestPull) -> None:
        for hook in self.hooks:
            hook.manifest_pulled(pull)

    def change_refused(self, change: Change, reason: str) -> None:
        for hook in self.hooks:
            hook.change_refused(change, reason)

    def access_refused(self, refusal: AccessRefused) -> None:
        for hook in self.hooks:
            hook.access_refused(refusal)

    async def close(self) -> None:
        for hook in self.hooks:
            await hook.close()

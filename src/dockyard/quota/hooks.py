"""Quotas in the registry's hook seam: new blobs are charged, removed artifacts release."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.engine import Database
from dockyard.quota import service
from dockyard.registry.hooks import BlobsLinked, ManifestPush, ManifestRemoval, NoHooks
from dockyard.settings import Settings


class RegistryHooks(NoHooks):
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def blobs_linked(self, session: AsyncSession, linked: BlobsLinked) -> None:
        """Refuses (``DeniedError``) blobs the project's limit has no room for."""
        await service.charge(session, linked)

    async def before_manifest_push(self, session: AsyncSession, push: ManifestPush) -> None:
        """Charges the blobs the manifest needs that the project no longer counts."""
        await service.charge_manifest(session, push)

    async def before_manifest_removal(
        self, session: AsyncSession, removal: ManifestRemoval
    ) -> None:
        await service.hold_release(session, removal)

    async def after_manifest_removal(self, session: AsyncSession, removal: ManifestRemoval) -> None:
        await service.release(session, removal)

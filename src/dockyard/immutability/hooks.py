"""Tag immutability in the registry's hook seam (``dockyard.registry.hooks``).

A push may not move an immutable tag to another manifest, and no removal (a
tag, an artifact, a repository's artifacts) may take one away; the first push
of an immutable tag, and pushing the same manifest again, are fine. Later
policies (vulnerability and signature gates) refuse in the same way, here.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.engine import Database
from dockyard.errors import ImmutableTagError
from dockyard.immutability import service
from dockyard.registry.hooks import ManifestPush, ManifestRemoval, NoHooks
from dockyard.settings import Settings


class RegistryHooks(NoHooks):
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def before_manifest_push(self, session: AsyncSession, push: ManifestPush) -> None:
        """Refuse to move an immutable tag (one query for the project's enabled rules)."""
        if push.tag is None or push.previous_digest is None or push.previous_digest == push.digest:
            return
        rules = await service.project_rules(session, push.project_id)
        [rule] = await service.protecting_each(rules, [(push.repository, push.tag)])
        if rule is not None:
            # Harbor's wording (scripts match "configured as immutable"), then which rule.
            raise ImmutableTagError(
                f"Failed to process request due to '{push.repository}:{push.tag}' configured "
                f"as immutable, cannot be overwritten (immutable tag {rule.describe()})"
            )

    async def before_manifest_removal(
        self, session: AsyncSession, removal: ManifestRemoval
    ) -> None:
        """Refuse to remove an immutable tag, alone or with its artifact."""
        if not removal.tags:
            return
        rules = await service.project_rules(session, removal.project_id)
        tags = list(removal.tags)
        found = await service.protecting_each(rules, [(removal.repository, t) for t in tags])
        for tag, rule in zip(tags, found, strict=True):
            if rule is not None:
                raise ImmutableTagError(
                    f"the tag {tag} configured as immutable, cannot be deleted "
                    f"({removal.repository}: immutable tag {rule.describe()})"
                )

"""Event-based replication: a push or a deletion here enqueues the executions of the
enabled event-based push policies it matches, in the transaction of the change.

A deletion is replicated whenever the policy has ``replicate_deletion`` and the artifact
matched its filters by the tags it had — so retention's deletions and deletions in
filtered policies travel too (the tags are known here, before they are gone). An
untagged artifact (an index's child pushed by digest) travels with its index, not alone.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.jobs import service as jobs
from dockyard.registry.hooks import ManifestPush, ManifestRemoval, NoHooks
from dockyard.replication import repository as repo
from dockyard.replication import service
from dockyard.replication.filters import Selection
from dockyard.replication.models import ReplicationPolicy


def _matches(selection: Selection, repository: str, tags: tuple[str, ...] | list[str]) -> bool:
    return selection.repository(repository) and (
        any(selection.tag(tag) for tag in tags) if selection.tags else True
    )


class RegistryHooks(NoHooks):
    async def _policies(self, session: AsyncSession) -> list[tuple[ReplicationPolicy, Selection]]:
        # A stored policy's filters were checked when it was saved.
        return [(row, service.selection_of(row)) for row in await service.event_policies(session)]

    async def after_manifest_push(self, session: AsyncSession, push: ManifestPush) -> None:
        if push.tag is None:
            return
        for row, selection in await self._policies(session):
            if selection.labels and not selection.labels_pass(
                await repo.label_names(session, push.repository, push.digest)
            ):
                continue
            if _matches(selection, push.repository, [push.tag]):
                spec = service.copy_spec(row, push.repository, push.digest, [push.tag])
                await service.start(session, row, jobs.EVENT, [spec])

    async def after_manifest_removal(self, session: AsyncSession, removal: ManifestRemoval) -> None:
        if not removal.tags and not removal.artifact_removed:
            return
        for row, selection in await self._policies(session):
            if not row.replicate_deletion:
                continue
            if not removal.tags and selection.tags:
                continue
            if removal.tags and not _matches(selection, removal.repository, removal.tags):
                continue
            if not selection.repository(removal.repository):
                continue
            spec = service.delete_spec(
                row, removal.repository, removal.digest, removal.tags, removal.artifact_removed
            )
            await service.start(session, row, jobs.EVENT, [spec])

"""Event-based replication: a push or a deletion here enqueues the executions of the
enabled event-based push policies it matches, in the transaction of the change.

A deletion is replicated whenever the policy has ``replicate_deletion`` and the artifact
matched its filters by the tags it had — so retention's deletions and deletions in
filtered policies travel too (the tags are known here, before they are gone). An
untagged artifact (an index's child pushed by digest) travels with its index, not alone.

Whether any event-based policy exists at all is read at most every
``EVENT_POLICY_REFRESH_SECONDS`` (one cheap query), so that a push costs no statement of
replication's where no such policy exists; a change of policies through this process's
API is seen at once (``policies_changed``), other nodes see it within that time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

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


EVENT_POLICY_REFRESH_SECONDS = 5.0


class RegistryHooks(NoHooks):
    def __init__(self) -> None:
        self._any_policy = True
        self._checked_until = 0.0

    def policies_changed(self) -> None:
        """A policy was made, changed or removed here: look again before the next push."""
        self._checked_until = 0.0

    async def _policies(self, session: AsyncSession) -> list[tuple[ReplicationPolicy, Selection]]:
        now = time.monotonic()
        if now >= self._checked_until:
            self._any_policy = await service.any_event_policy(session)
            self._checked_until = now + EVENT_POLICY_REFRESH_SECONDS
        if not self._any_policy:
            return []
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


def find(hooks: Sequence[NoHooks]) -> RegistryHooks | None:
    """This package's hook among the registered ones (to tell it that policies changed)."""
    for hook in hooks:
        if isinstance(hook, RegistryHooks):
            return hook
    return None

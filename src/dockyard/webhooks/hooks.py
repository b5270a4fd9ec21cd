"""Webhooks in the registry's hook seam (``dockyard.registry.hooks``).

- **Pushes and deletions** enqueue their deliveries inside the change's own
  transaction: one indexed query for the project's enabled policies, and more
  work only when one of them wants the event. A rolled-back change sends nothing.
- **Pulls** never wait for anything. ``manifest_pulled`` checks an in-memory set
  of the projects that have an enabled ``PULL_ARTIFACT`` policy (reloaded by one
  query at most every ``SUBSCRIBERS_SECONDS``, and at once after a policy changes
  through this process); a pull in another project costs nothing more. Pulls that
  may matter are queued, and a background task enqueues their deliveries in one
  transaction per batch.
- **Quota refusals** (a ``DeniedError`` from the quota hook) become
  ``QUOTA_EXCEED`` events the same way: the refused change rolls back, so the
  background task writes them in a transaction of their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.background import Flusher
from dockyard.db.engine import Database
from dockyard.quota import repository as quota_repo
from dockyard.registry.hooks import (
    BlobsLinked,
    Change,
    ManifestPull,
    ManifestPush,
    ManifestRemoval,
    NoHooks,
)
from dockyard.settings import Settings
from dockyard.webhooks import repository as repo
from dockyard.webhooks import service
from dockyard.webhooks.payloads import (
    DELETE_ARTIFACT,
    DELETE_TAG,
    PULL_ARTIFACT,
    PUSH_ARTIFACT,
    QUOTA_EXCEED,
    QUOTA_WARNING,
    artifact_data,
)

log = logging.getLogger("dockyard.webhooks")

SUBSCRIBERS_SECONDS = 10.0
"""How stale the set of projects with pull policies may get (policies changed elsewhere)."""
FLUSH_SECONDS = 1.0
MAX_QUEUED = 10_000
QUOTA_WARNING_PERCENT = 85
"""Storage use, in percent of the project's limit, that sends ``QUOTA_WARNING``."""
QUOTA_REFUSAL = "quota exceeded"
"""How the quota hook's refusals begin (``quota.service.charge``)."""


@dataclass(frozen=True, slots=True)
class _Refusal:
    operator: str
    project_id: int
    repository: str
    digest: str | None
    tag: str | None
    reason: str
    when: datetime


class RegistryHooks(NoHooks):
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.registry_host = service.registry_host(settings.public_url)
        # Per event type: the names of projects with an enabled policy for it, and when
        # that set was loaded (the pull and quota-warning paths judge by it, query-free).
        self._subscriber_sets: dict[str, tuple[float, frozenset[str]]] = {}
        self._pulls: list[tuple[ManifestPull, datetime]] = []
        self._refusals: list[_Refusal] = []
        self._flusher = Flusher(self.flush, FLUSH_SECONDS, "webhook event writer")
        self._flushing = asyncio.Lock()

    @property
    def queued(self) -> int:
        """Pulls and refusals waiting for the background task."""
        return len(self._pulls) + len(self._refusals)

    def policies_changed(self) -> None:
        """A policy changed: reload the pull subscribers before the next pull is judged."""
        self._subscriber_sets.clear()

    # --- pushes and deletions, in their transaction ----------------------------------

    async def _data(
        self,
        session: AsyncSession,
        project_id: int,
        repository: str,
        resources: list[tuple[str, str | None]],
    ) -> dict[str, Any]:
        return await service.artifact_event_data(
            session, self.registry_host, project_id, repository, resources
        )

    async def after_manifest_push(self, session: AsyncSession, push: ManifestPush) -> None:
        """``PUSH_ARTIFACT`` for what a client pushed by name, or an index or a referrer
        pushed by digest. An image manifest pushed by digest is, as a rule, a child of an
        index on its way (docker, buildx, podman and copies push the children first): it is
        announced by its index's event, so a multi-platform push sends one event, not one
        per platform; a tag it gets later announces it then."""
        policies = await service.subscribed_policies(session, push.project_id, PUSH_ARTIFACT)
        if not policies:
            return
        if push.tag is None and not await repo.announced_by_digest(session, push.artifact_id):
            return
        data = await self._data(
            session, push.project_id, push.repository, [(push.digest, push.tag)]
        )
        event = service.new_event(PUSH_ARTIFACT, push.project_id, data, push.actor.name)
        await service.enqueue_deliveries(session, policies, event)

    async def after_manifest_removal(self, session: AsyncSession, removal: ManifestRemoval) -> None:
        if not removal.artifact_removed:
            await self._tag_deleted(session, removal)
            return
        policies = await service.subscribed_policies(session, removal.project_id, DELETE_ARTIFACT)
        if not policies:
            return
        resources: list[tuple[str, str | None]] = [(removal.digest, t) for t in removal.tags]
        data = await self._data(
            session, removal.project_id, removal.repository, resources or [(removal.digest, None)]
        )
        event = service.new_event(DELETE_ARTIFACT, removal.project_id, data, removal.actor.name)
        await service.enqueue_deliveries(session, policies, event)

    async def _tag_deleted(self, session: AsyncSession, removal: ManifestRemoval) -> None:
        """``DELETE_TAG``: the tag went, its artifact stays (an artifact's own removal is
        ``DELETE_ARTIFACT`` alone, as in Harbor)."""
        if not removal.tags:
            return
        policies = await service.subscribed_policies(session, removal.project_id, DELETE_TAG)
        if not policies:
            return
        resources: list[tuple[str, str | None]] = [(removal.digest, t) for t in removal.tags]
        data = await self._data(session, removal.project_id, removal.repository, resources)
        event = service.new_event(DELETE_TAG, removal.project_id, data, removal.actor.name)
        await service.enqueue_deliveries(session, policies, event)

    async def blobs_linked(self, session: AsyncSession, linked: BlobsLinked) -> None:
        """``QUOTA_WARNING`` when these blobs take the project's storage over
        ``QUOTA_WARNING_PERCENT`` of its limit (once, on the crossing). Projects with no
        warning policy cost a look at an in-memory set."""
        if not linked.blobs:
            return
        project = linked.repository.partition("/")[0]
        if project not in await self._subscribers(QUOTA_WARNING, session):
            return
        quota = await quota_repo.find_quota(session, linked.project_id)
        if quota is None or quota.hard_storage <= 0:
            return
        added = sum(size for _, size in linked.blobs)
        threshold = quota.hard_storage * QUOTA_WARNING_PERCENT / 100
        if not quota.used_storage - added < threshold <= quota.used_storage:
            return
        policies = await service.subscribed_policies(session, linked.project_id, QUOTA_WARNING)
        if not policies:
            return
        data = await self._data(session, linked.project_id, linked.repository, [])
        data["custom_attributes"] = {
            "Details": (
                f"quota usage reached {QUOTA_WARNING_PERCENT}%: "
                f"{quota.used_storage} of {quota.hard_storage} bytes used"
            )
        }
        event = service.new_event(QUOTA_WARNING, linked.project_id, data, linked.actor.name)
        await service.enqueue_deliveries(session, policies, event)

    # --- pulls and refusals, off the request path ------------------------------------

    def manifest_pulled(self, pull: ManifestPull) -> None:
        if self._flusher.closed:
            return
        known = self._subscriber_sets.get(PULL_ARTIFACT)
        fresh = known is not None and time.monotonic() - known[0] < SUBSCRIBERS_SECONDS
        if fresh and known is not None and pull.repository.partition("/")[0] not in known[1]:
            return
        if len(self._pulls) >= MAX_QUEUED:
            return
        self._pulls.append((pull, datetime.now(UTC)))
        self._flusher.start()

    def change_refused(self, change: Change, reason: str) -> None:
        if self._flusher.closed or not reason.startswith(QUOTA_REFUSAL):
            return
        if isinstance(change, ManifestRemoval) or len(self._refusals) >= MAX_QUEUED:
            return
        digest = change.digest if isinstance(change, ManifestPush) else None
        tag = change.tag if isinstance(change, ManifestPush) else None
        project_id = change.project_id
        repository = change.repository
        if isinstance(change, BlobsLinked) and not change.blobs:
            return
        self._refusals.append(
            _Refusal(
                change.actor.name, project_id, repository, digest, tag, reason, datetime.now(UTC)
            )
        )
        self._flusher.wake()

    async def _subscribers(
        self, event_type: str, session: AsyncSession | None = None
    ) -> frozenset[str]:
        """Names of projects with an enabled policy for ``event_type``: one query at most
        every ``SUBSCRIBERS_SECONDS``, and at once after a policy change on this node.

        A caller inside a transaction passes its ``session``: opening a second connection
        there lets concurrent pushes, each holding one, exhaust the pool and wait on it."""
        known = self._subscriber_sets.get(event_type)
        if known is not None and time.monotonic() - known[0] < SUBSCRIBERS_SECONDS:
            return known[1]
        loaded_at = time.monotonic()
        if session is not None:
            names = frozenset(await repo.projects_subscribed_to(session, event_type))
        else:
            async with self.db.read() as own:
                names = frozenset(await repo.projects_subscribed_to(own, event_type))
        self._subscriber_sets[event_type] = (loaded_at, names)
        return names

    async def flush(self) -> int:
        """Enqueue the deliveries of queued pulls and refusals; returns how many events
        were enqueued. Never raises (a failed batch is logged and dropped)."""
        async with self._flushing:
            pulls, self._pulls = self._pulls, []
            refusals, self._refusals = self._refusals, []
            if not pulls and not refusals:
                return 0
            try:
                subscribers = await self._subscribers(PULL_ARTIFACT) if pulls else frozenset()
                wanted = [p for p in pulls if p[0].repository.partition("/")[0] in subscribers]
                if not wanted and not refusals:
                    return 0
                async with self.db.write() as session:
                    return await self._pulls_out(session, wanted) + await self._refusals_out(
                        session, refusals
                    )
            except Exception:
                log.exception(
                    "could not enqueue webhooks for %d pulls and %d refusals; they are dropped",
                    len(pulls),
                    len(refusals),
                )
                return 0

    async def _pulls_out(
        self, session: AsyncSession, pulls: Sequence[tuple[ManifestPull, datetime]]
    ) -> int:
        if not pulls:
            return 0
        facts = await repo.repository_facts(session, (p.repository for p, _ in pulls))
        by_project: dict[int, list[tuple[ManifestPull, datetime]]] = defaultdict(list)
        for pull, when in pulls:
            if pull.repository in facts:
                by_project[facts[pull.repository][0]].append((pull, when))
        count = 0
        for project_id, items in by_project.items():
            policies = await service.subscribed_policies(session, project_id, PULL_ARTIFACT)
            if not policies:
                continue
            for pull, when in items:
                _, created, public = facts[pull.repository]
                data = artifact_data(
                    registry_host=self.registry_host,
                    repository=pull.repository,
                    repository_created=created,
                    public=public,
                    resources=[(pull.digest, pull.tag)],
                )
                event = replace(
                    service.new_event(PULL_ARTIFACT, project_id, data, pull.actor.name),
                    occur_at=when,
                )
                await service.enqueue_deliveries(session, policies, event)
                count += 1
        return count

    async def _refusals_out(self, session: AsyncSession, refusals: Sequence[_Refusal]) -> int:
        count = 0
        for refusal in refusals:
            policies = await service.subscribed_policies(session, refusal.project_id, QUOTA_EXCEED)
            if not policies:
                continue
            data = await self._data(
                session,
                refusal.project_id,
                refusal.repository,
                [(refusal.digest, refusal.tag)] if refusal.digest else [],
            )
            data["custom_attributes"] = {"Details": refusal.reason}
            event = service.new_event(QUOTA_EXCEED, refusal.project_id, data, refusal.operator)
            await service.enqueue_deliveries(session, policies, event)
            count += 1
        return count

    async def close(self) -> None:
        """Stop the background task and enqueue what is queued."""
        await self._flusher.close()


def find(hooks: Sequence[NoHooks]) -> RegistryHooks | None:
    """This package's hook among the registered ones (to tell it that policies changed)."""
    for hook in hooks:
        if isinstance(hook, RegistryHooks):
            return hook
    return None

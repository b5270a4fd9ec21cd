"""The audit log's part in the registry's hook seam (``dockyard.registry.hooks``).

Pushes and removals are recorded inside their own transaction. A push, removal
or upload a hook refused, and every other refusal ``service.record_failure``
hands over (failed logins, denied API writes), is queued as a failed event in a
bounded ``refusals.RefusalQueue`` and written by the same background task as
pulls. Pulls are not
written on the request path: ``manifest_pulled`` only queues them, and a
background task started on the first pull writes each batch (every
``FLUSH_SECONDS`` or ``FLUSH_EVENTS`` pulls, and on ``close``) in one
transaction: the audit rows, repository pull counts and artifact and tag pull
times. When ``pull_artifact`` is among ``disabled_audit_log_event_types`` the
times and counts are still kept but no audit rows are written. A failed batch is
logged and dropped; a pull never waits for it nor fails because of it.

The hooks also own the process's syslog forwarder (``audit.forwarding``): the
first recorder built on a database attaches one, and closes it with itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit import forwarding, refusals, service
from dockyard.audit import repository as repo
from dockyard.audit.events import Actor, AuditEvent
from dockyard.background import Flusher
from dockyard.db.base import utcnow
from dockyard.db.engine import Database
from dockyard.registry.hooks import (
    AccessRefused,
    Change,
    ManifestPull,
    ManifestPush,
    ManifestRemoval,
    NoHooks,
)
from dockyard.settings import Settings

log = logging.getLogger("dockyard.audit")

FLUSH_SECONDS = 2.0
FLUSH_EVENTS = 500
MAX_QUEUED = 100_000
"""Pulls kept while the database is unreachable; older ones are dropped beyond this."""


def artifact_resource(repository: str, digest: str, tag: str | None) -> str:
    """``project/repo:tag`` for a tag, ``project/repo@digest`` otherwise (as Harbor names them)."""
    return f"{repository}:{tag}" if tag else f"{repository}@{digest}"


async def _with_projects(
    session: AsyncSession, rows: list[refusals.Refusal]
) -> list[refusals.Refusal]:
    """Refused ``/v2/`` requests name a repository, not its project (no lookup on the
    request path): find each one's project here, so its admins see it in its logs."""
    unknown = {
        event.resource.partition("/")[0]
        for _, event, _ in rows
        if event.project_id == 0 and event.resource_type == "artifact" and "/" in event.resource
    }
    found = await repo.project_ids_by_name(session, unknown)
    if not found:
        return rows
    return [
        (actor, replace(event, project_id=found.get(event.resource.partition("/")[0], 0)), when)
        if event.project_id == 0 and event.resource_type == "artifact"
        else (actor, event, when)
        for actor, event, when in rows
    ]


class RegistryHooks(NoHooks):
    """Records pushes and removals with them; queues pulls for the background writer."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._queue: list[tuple[ManifestPull, datetime]] = []
        self.refusals = refusals.RefusalQueue()
        self._flusher = Flusher(self.flush, FLUSH_SECONDS, "pull recorder")
        self._flushing = asyncio.Lock()
        forwarder = forwarding.SyslogForwarder()
        self.forwarder = forwarder if forwarding.attach(db, forwarder) else None
        """This process's syslog forwarder (None when another recorder owns it)."""
        self.owns_refusals = service.attach_refusals(db, self)
        """Whether ``service.record_failure`` queues this database's refusals here."""

    # --- pushes and removals, in their transaction ------------------------------------

    async def after_manifest_push(self, session: AsyncSession, push: ManifestPush) -> None:
        description = f"push {push.digest}"
        if push.previous_digest and push.previous_digest != push.digest:
            description += f" (tag moved from {push.previous_digest})"
        await service.record(
            session,
            push.actor,
            AuditEvent(
                "create",
                "artifact",
                artifact_resource(push.repository, push.digest, push.tag),
                push.project_id,
                description,
            ),
        )

    async def after_manifest_removal(self, session: AsyncSession, removal: ManifestRemoval) -> None:
        if removal.artifact_removed:
            event = AuditEvent(
                "delete",
                "artifact",
                artifact_resource(removal.repository, removal.digest, None),
                removal.project_id,
                "delete artifact"
                + (f" with tags {', '.join(removal.tags)}" if removal.tags else ""),
            )
        else:
            tag = removal.tags[0] if removal.tags else None
            event = AuditEvent(
                "delete",
                "tag",
                artifact_resource(removal.repository, removal.digest, tag),
                removal.project_id,
                f"delete tag of {removal.digest}",
            )
        await service.record(session, removal.actor, event)

    # --- pulls, batched off the request path ------------------------------------------

    def change_refused(self, change: Change, reason: str) -> None:
        """Queue the refused change as a failed event; the background writer records it
        (the refused change's own transaction rolls back, so it cannot)."""
        if self._flusher.closed:
            return
        if isinstance(change, ManifestPush):
            event = AuditEvent(
                "create",
                "artifact",
                artifact_resource(change.repository, change.digest, change.tag),
                change.project_id,
                f"refused: {reason}",
                succeeded=False,
            )
        elif isinstance(change, ManifestRemoval):
            tag = None if change.artifact_removed or not change.tags else change.tags[0]
            event = AuditEvent(
                "delete",
                "artifact" if change.artifact_removed else "tag",
                artifact_resource(change.repository, change.digest, tag),
                change.project_id,
                f"refused: {reason}",
                succeeded=False,
            )
        else:
            event = AuditEvent(
                "create",
                "blob",
                change.repository,
                change.project_id,
                f"refused: {reason}",
                succeeded=False,
            )
        self.refused(change.actor, event)

    def access_refused(self, refusal: AccessRefused) -> None:
        """A ``/v2/`` request refused for want of permission: a failed pull, push
        (``create``) or delete of the repository's artifacts."""
        if "delete" in refusal.actions:
            operation = "delete"
        elif "push" in refusal.actions:
            operation = "create"
        else:
            operation = "pull"
        event = AuditEvent(
            operation, "artifact", refusal.repository, 0, f"refused: {refusal.reason}"
        )
        self.refused(refusal.actor, event)

    def refused(self, actor: Actor, event: AuditEvent) -> None:
        """Queue a refusal for the background writer (coalesced and rate-limited)."""
        if self._flusher.closed:
            return
        self.refusals.add(actor, event, utcnow())
        self._flusher.start()

    def manifest_pulled(self, pull: ManifestPull) -> None:
        if self._flusher.closed:
            return
        if len(self._queue) >= MAX_QUEUED:
            del self._queue[: len(self._queue) - MAX_QUEUED + 1]
        self._queue.append((pull, utcnow()))
        if len(self._queue) >= FLUSH_EVENTS:
            self._flusher.wake()
        else:
            self._flusher.start()

    async def flush(self) -> int:
        """Write every queued pull now; returns how many were written. Never raises."""
        async with self._flushing:
            batch, self._queue = self._queue, []
            failures = self.refusals.drain(final=self._flusher.closed)
            if not batch and not failures:
                return 0
            try:
                async with self.db.write() as session:
                    settings = await service.audit_settings(session)
                    if batch:
                        await self._write(session, settings, batch)
                    if failures:
                        failures = await _with_projects(session, failures)
                        service.add_rows(session, settings, failures)
            except Exception:
                log.exception(
                    "could not record %d pulls and %d refusals; they are dropped",
                    len(batch),
                    len(failures),
                )
                return 0
            return len(batch) + len(failures)

    async def _write(
        self,
        session: AsyncSession,
        settings: service.AuditSettings,
        batch: list[tuple[ManifestPull, datetime]],
    ) -> None:
        known = await repo.repositories_by_name(session, (p.repository for p, _ in batch))
        counts: Counter[int] = Counter()
        artifacts: dict[tuple[int, str], datetime] = {}
        tags: dict[tuple[int, str], datetime] = {}
        events: list[tuple[Actor, AuditEvent, datetime]] = []
        for pull, when in batch:
            found = known.get(pull.repository)
            if found is None:  # deleted since
                continue
            repository_id, project_id = found
            counts[repository_id] += 1
            artifacts[(repository_id, pull.digest)] = when
            if pull.tag:
                tags[(repository_id, pull.tag)] = when
            events.append(
                (
                    pull.actor,
                    AuditEvent(
                        "pull",
                        "artifact",
                        artifact_resource(pull.repository, pull.digest, pull.tag),
                        project_id,
                        f"pull {pull.digest}",
                    ),
                    when,
                )
            )
        await repo.record_pulls(session, counts, artifacts, tags)
        service.add_rows(session, settings, events)

    async def close(self) -> None:
        """Stop the background task and write what is queued."""
        await self._flusher.close()
        if self.owns_refusals:
            service.detach_refusals(self.db, self)
        if self.forwarder is not None:
            await self.forwarder.close()
            forwarding.detach(self.db, self.forwarder)

"""Registry hooks of scanning: scan on push (``auto_scan``) and tidy records on removal.

- After a new image is pushed to a project whose metadata says ``auto_scan: true``, a
  vulnerability scan by the project's scanner is enqueued (and with
  ``auto_sbom_generation: true`` an SBOM scan, whose SBOM becomes the image's
  ``harbor.sbom`` accessory) **in the push's transaction**
  (so a rolled-back push scans nothing and a committed one is scanned even if this
  process dies). An index is not scanned itself: its children were each pushed, and
  scanned, before it. A project with no usable scanner pushes as before.
  Which projects scan on push is read in one query for all of them and kept
  ``AUTO_SCAN_REFRESH_SECONDS``, so a push pays no statement for it (the push budget,
  docs/scaling.md); the project API tells this process's hook at once when the switch
  changes (``auto_scan_changed``), other nodes see it within that time.
- Before an artifact is removed, its reports go and so do the vulnerability records no
  other report holds (the report rows would go with the artifact anyway; the shared
  records would not).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.engine import Database
from dockyard.jobs import service as jobs
from dockyard.oci.mediatypes import INDEX_TYPES
from dockyard.registry.hooks import ManifestPush, ManifestRemoval, NoHooks
from dockyard.registry.models import Artifact
from dockyard.scan import registrations, reports
from dockyard.scan.client import SBOM, VULNERABILITY
from dockyard.scan.service import AUTO_SBOM, AUTO_SCAN, auto_scan_projects, enqueue_scan
from dockyard.settings import Settings

log = logging.getLogger("dockyard.scan")
AUTO_SCAN_REFRESH_SECONDS = 5.0


class RegistryHooks(NoHooks):
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._auto_scan: frozenset[int] = frozenset()
        self._auto_sbom: frozenset[int] = frozenset()
        self._fresh_until = 0.0

    def auto_scan_changed(self) -> None:
        """A project's ``auto_scan`` or ``auto_sbom_generation`` changed: read the switches
        again before the next push."""
        self._fresh_until = 0.0

    async def _on_push(self, session: AsyncSession, project_id: int) -> list[str]:
        """The scan types a push to the project starts (none, vulnerability, SBOM)."""
        now = time.monotonic()
        if now >= self._fresh_until:
            found = await auto_scan_projects(session)
            self._auto_scan = frozenset(found[AUTO_SCAN])
            self._auto_sbom = frozenset(found[AUTO_SBOM])
            self._fresh_until = now + AUTO_SCAN_REFRESH_SECONDS
        kinds = [VULNERABILITY] if project_id in self._auto_scan else []
        return kinds + ([SBOM] if project_id in self._auto_sbom else [])

    async def after_manifest_push(self, session: AsyncSession, push: ManifestPush) -> None:
        if not push.artifact_is_new:
            return
        kinds = await self._on_push(session, push.project_id)
        if not kinds:
            return
        artifact = await session.get(Artifact, push.artifact_id)
        if artifact is None or artifact.manifest_media_type in INDEX_TYPES:
            return
        if artifact.type != "IMAGE":
            return  # signatures, SBOMs and other artifacts are not images to scan
        registration = await registrations.registration_of_project(session, push.project_id)
        if registration is None or registration.disabled:
            log.info("auto_scan: project %s has no usable scanner", push.project_id)
            return
        for kind in kinds:
            await enqueue_scan(session, registration, [artifact], kind, push.actor.name, jobs.EVENT)

    async def before_manifest_removal(
        self, session: AsyncSession, removal: ManifestRemoval
    ) -> None:
        if removal.artifact_removed:
            await reports.drop_orphans_of_artifacts(session, [removal.artifact_id])


def find(hooks: Sequence[NoHooks]) -> RegistryHooks | None:
    """This package's hook among the registered ones (to tell it that a switch changed)."""
    for hook in hooks:
        if isinstance(hook, RegistryHooks):
            return hook
    return None

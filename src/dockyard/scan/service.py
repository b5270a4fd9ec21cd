"""Scans as jobs: ``scanArtifact``, ``stopScanArtifact``, ``getReportLog`` and scan on push.

A request enqueues, in its own transaction, one execution (vendor type ``IMAGE_SCAN`` or
``SBOM``) with one task per artifact — an index's children each get one, the index none
— and sets each artifact's report row ``Pending`` under a new report id. The job
(``scan/jobs.py``) then talks to the project's scanner adapter.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.artifacts.service import resolve_artifact, resolve_repository
from dockyard.db.base import utcnow
from dockyard.errors import BadRequestError, NotFoundError
from dockyard.iam.policy import Action, Principal, Resource
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution, Task
from dockyard.oci.mediatypes import INDEX_TYPES
from dockyard.projects.models import ProjectMetadata
from dockyard.registry.models import Artifact, ArtifactReference, Tag
from dockyard.scan import registrations, reports
from dockyard.scan.client import SBOM, SCAN_TYPES, VULNERABILITY
from dockyard.scan.models import ScannerRegistration, ScanReport

SCAN_JOB = "IMAGE_SCAN"
SBOM_JOB = "SBOM"
SCAN_ALL_JOB = "SCAN_ALL"
"""Scan all's executions (``scan/scanall.py``) hold scan tasks of many artifacts."""
JOB_OF = {VULNERABILITY: SCAN_JOB, SBOM: SBOM_JOB}
MAX_ATTEMPTS = 3
"""Tries per artifact: a transient adapter failure (network, timeout, 5xx) is retried."""
AUTO_SCAN = "auto_scan"
AUTO_SBOM = "auto_sbom_generation"


@dataclass(frozen=True, slots=True)
class Requested:
    execution_id: int
    report_ids: list[str]


def scan_type_of(value: str | None) -> str:
    kind = (value or VULNERABILITY).strip()
    if kind not in SCAN_TYPES:
        raise BadRequestError(f"scan_type must be one of {', '.join(SCAN_TYPES)}")
    return kind


def _resource(scan_type: str) -> Resource:
    return Resource.SBOM if scan_type == SBOM else Resource.SCAN


async def _children(session: AsyncSession, artifact: Artifact) -> list[Artifact]:
    """What a scan of ``artifact`` covers: itself, or an index's children."""
    if artifact.manifest_media_type not in INDEX_TYPES:
        return [artifact]
    rows = await session.scalars(
        select(Artifact)
        .join(ArtifactReference, ArtifactReference.child_id == Artifact.id)
        .where(ArtifactReference.parent_id == artifact.id)
        .order_by(ArtifactReference.id)
    )
    return [a for a in rows if a.manifest_media_type not in INDEX_TYPES]


async def tags_of(session: AsyncSession, artifact_ids: Sequence[int]) -> dict[int, str]:
    """A tag of each artifact (its first), in one query; untagged artifacts are absent."""
    if not artifact_ids:
        return {}
    first = (
        select(func.min(Tag.id))
        .where(Tag.artifact_id.in_(artifact_ids))
        .group_by(Tag.artifact_id)
        .scalar_subquery()
    )
    rows = await session.execute(select(Tag.artifact_id, Tag.name).where(Tag.id.in_(first)))
    return {int(artifact_id): str(name) for artifact_id, name in rows}


def task_spec(
    artifact: Artifact, tag: str, registration_uuid: str, scan_type: str, requester: str
) -> jobs.TaskSpec:
    """The task that scans one artifact (``scan/jobs.py`` reads these params)."""
    return jobs.TaskSpec(
        params={
            "artifact_id": artifact.id,
            "repository": artifact.repository_name,
            "digest": artifact.digest,
            "tag": tag,
            "media_type": artifact.manifest_media_type,
            "registration_uuid": registration_uuid,
            "scan_type": scan_type,
            "mime_type": SCAN_TYPES[scan_type],
            "report_uuid": str(uuid.uuid4()),
            "requester": requester,
            "max_attempts": MAX_ATTEMPTS,
        },
        extra_attrs={"artifact_id": artifact.id, "digest": artifact.digest},
        max_attempts=MAX_ATTEMPTS,
    )


def new_scans(
    specs: Sequence[jobs.TaskSpec], task_ids: Sequence[int | None]
) -> list[reports.NewScan]:
    """The report rows to begin for ``specs``, each with its task's id."""
    return [
        reports.NewScan(
            artifact_id=int(spec.params["artifact_id"]),
            digest=str(spec.params["digest"]),
            registration_uuid=str(spec.params["registration_uuid"]),
            report_uuid=str(spec.params["report_uuid"]),
            task_id=task_id,
        )
        for spec, task_id in zip(specs, task_ids, strict=True)
    ]


async def enqueue_scan(
    session: AsyncSession,
    registration: ScannerRegistration,
    artifacts: Sequence[Artifact],
    scan_type: str,
    requester: str,
    trigger: str = jobs.MANUAL,
) -> Requested:
    """One execution with a task per artifact, in the caller's transaction."""
    tags = await tags_of(session, [a.id for a in artifacts])
    specs = [
        task_spec(a, tags.get(a.id, ""), registration.uuid, scan_type, requester) for a in artifacts
    ]
    execution = await jobs.enqueue(
        session,
        JOB_OF[scan_type],
        vendor_id=registration.id,
        trigger=trigger,
        extra_attrs={"scan_type": scan_type, "scanner": registration.name},
        tasks=specs,
    )
    rows = await session.execute(
        select(Task.id, Task.params).where(Task.execution_id == execution.id)
    )
    task_of = {str(jobs.loads(params).get("report_uuid")): task_id for task_id, params in rows}
    scans = new_scans(specs, [task_of.get(str(spec.params["report_uuid"])) for spec in specs])
    await reports.begin_many(session, scans, SCAN_TYPES[scan_type], execution.id)
    return Requested(execution.id, [s.report_uuid for s in scans])


async def scan_artifact(
    session: AsyncSession,
    principal: Principal,
    project_name: str,
    repository_name: str,
    reference: str,
    scan_type: str,
) -> Requested:
    """``scanArtifact``: needs ``scan:create`` (``sbom:create`` for an SBOM)."""
    target = await resolve_repository(
        session, principal, project_name, repository_name, Action.CREATE, _resource(scan_type)
    )
    artifact = await resolve_artifact(session, target, reference)
    registration = await registrations.usable_registration(session, target.project.project_id)
    covered = await _children(session, artifact)
    if not covered:
        raise BadRequestError(f"artifact {artifact.digest} has nothing a scanner can scan")
    return await enqueue_scan(session, registration, covered, scan_type, principal.name)


async def _reports_of(
    session: AsyncSession, artifacts: Sequence[Artifact], registration_uuid: str, mime: str
) -> list[ScanReport]:
    rows = await session.scalars(
        select(ScanReport).where(
            ScanReport.artifact_id.in_([a.id for a in artifacts]),
            ScanReport.registration_uuid == registration_uuid,
            ScanReport.mime_type == mime,
        )
    )
    return list(rows)


async def stop_scan(
    session: AsyncSession,
    principal: Principal,
    project_name: str,
    repository_name: str,
    reference: str,
    scan_type: str,
) -> None:
    """``stopScanArtifact``: stops the running scan of the artifact (``scan:stop``)."""
    target = await resolve_repository(
        session, principal, project_name, repository_name, Action.STOP, _resource(scan_type)
    )
    artifact = await resolve_artifact(session, target, reference)
    registration = await registrations.registration_of_project(session, target.project.project_id)
    if registration is None:
        raise BadRequestError(f"no {scan_type} scan of artifact {artifact.digest} is running")
    running = [
        row
        for row in await _reports_of(
            session, await _children(session, artifact), registration.uuid, SCAN_TYPES[scan_type]
        )
        if row.status in (reports.PENDING, reports.RUNNING)
    ]
    if not running:
        raise BadRequestError(f"no {scan_type} scan of artifact {artifact.digest} is running")
    for execution_id in sorted({row.execution_id for row in running if row.execution_id}):
        execution = await session.get(Execution, execution_id)
        if execution is None or execution.status in jobs.FINAL_STATUSES:
            continue
        if execution.vendor_type == SCAN_ALL_JOB:  # only this artifact's scans, not the run
            for row in running:
                task = await session.get(Task, row.task_id) if row.task_id else None
                if row.execution_id == execution_id and task is not None:
                    await jobs.stop_task(session, task)
        else:
            await jobs.stop_execution(session, execution)
    for row in running:
        task = await session.get(Task, row.task_id) if row.task_id else None
        if task is None or task.status == jobs.STOPPED:
            row.status = reports.STOPPED
            row.end_time = utcnow()


async def report_log(
    session: AsyncSession,
    principal: Principal,
    project_name: str,
    repository_name: str,
    reference: str,
    report_id: str,
) -> str:
    """``getReportLog``: the log of the task that made the report (``scan:read``)."""
    target = await resolve_repository(
        session, principal, project_name, repository_name, Action.READ, Resource.SCAN
    )
    artifact = await resolve_artifact(session, target, reference)
    covered = {a.id for a in await _children(session, artifact)} | {artifact.id}
    row: ScanReport | None = (
        await session.scalar(select(ScanReport).where(ScanReport.uuid == report_id))
        if registrations.is_key(report_id)
        else None
    )
    if row is None or row.artifact_id not in covered or row.task_id is None:
        raise NotFoundError(f"no scan report {report_id[:64]!r} of artifact {artifact.digest}")
    return await jobs.task_log(session, row.task_id)


async def auto_scan_projects(session: AsyncSession) -> dict[str, set[int]]:
    """The projects whose metadata turns scan on push (``auto_scan``) and SBOM on push
    (``auto_sbom_generation``) on, by switch (one query)."""
    rows = await session.execute(
        select(ProjectMetadata.name, ProjectMetadata.project_id).where(
            ProjectMetadata.name.in_((AUTO_SCAN, AUTO_SBOM)), ProjectMetadata.value == "true"
        )
    )
    found: dict[str, set[int]] = {AUTO_SCAN: set(), AUTO_SBOM: set()}
    for name, project_id in rows:
        found[str(name)].add(int(project_id))
    return found

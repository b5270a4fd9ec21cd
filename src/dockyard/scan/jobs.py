"""The ``IMAGE_SCAN`` and ``SBOM`` jobs: one task scans one artifact with one adapter.

A task:

1. reads the registration (its credential opened) and marks the report ``Running``;
2. asks the adapter's ``GET /metadata`` whether it makes the wanted report for this
   artifact's media type;
3. signs a registry token that may only pull the artifact's repository, for the
   requester, living no longer than the scan may take (``scan_timeout_seconds``), and
   sends ``POST /scan`` with the registry's URL (its external URL, or the address it
   listens on when the registration says ``use_internal_addr``) and that token;
4. polls ``GET /scan/{id}/report``, waiting what each ``302`` says in
   ``Refresh-After``, until the report comes or the time limit passes, checking for a
   stop between polls;
5. stores the report (``reports.store_*``), replacing the previous one in one
   transaction, with the ``SCANNING_COMPLETED`` webhook event of the artifact's project
   (``SCANNING_FAILED``/``SCANNING_STOPPED`` in the transaction that ends it otherwise).

A transient failure (network, timeout, 5xx) raises, so the job system retries the task
with backoff; on its last attempt, or for anything retrying cannot fix (a 4xx, an
answer that is not the spec's JSON, an adapter that cannot scan this artifact), the
report ends ``Error`` with the adapter's message and the task ends ``Error``. Nothing
an adapter does reaches the API as a 500. The adapter's credential and the pull token
are never written to the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit.events import Actor
from dockyard.errors import AppError
from dockyard.http.outbound import OutboundClient
from dockyard.iam.tokens import TokenAuthority
from dockyard.jobs.runner import JobContext, JobStopped, JobType, LeaseLost, PermanentJobError
from dockyard.oci.scope import Scope
from dockyard.registry.models import Artifact
from dockyard.scan import export, registrations, reports, sbom, scanall
from dockyard.scan.client import (
    SBOM,
    SBOM_MEDIA_TYPE,
    SBOM_MIME,
    AdapterClient,
    AdapterError,
    Endpoint,
    ReportPending,
    capabilities_mimes,
    parse_report,
)
from dockyard.scan.models import ScanReport
from dockyard.scan.schemas import AdapterScanner
from dockyard.scan.service import JOB_OF
from dockyard.settings import Settings
from dockyard.system.bootstrap import load_token_key
from dockyard.webhooks import service as webhooks
from dockyard.webhooks.payloads import SCANNING_COMPLETED, SCANNING_FAILED, SCANNING_STOPPED

EVENT_OF_STATUS = {
    reports.SUCCESS: SCANNING_COMPLETED,
    reports.ERROR: SCANNING_FAILED,
    reports.STOPPED: SCANNING_STOPPED,
}
"""The webhook event a scan's end sends, by the report's final status."""


class ScanFailed(Exception):
    """A transient adapter failure: retried while attempts remain."""


def internal_url(settings: Settings) -> str:
    """The address Dockyard listens on (``use_internal_addr``), whatever ``external_url`` says."""
    return settings.model_copy(update={"external_url": ""}).public_url


def registry_url(settings: Settings, use_internal_addr: bool) -> str:
    return internal_url(settings) if use_internal_addr else settings.public_url


@functools.lru_cache(maxsize=4)
def _authority(pem: str, issuer: str, service: str, ttl_seconds: int) -> TokenAuthority:
    """The signer for a key, made once per process: reading an RSA key costs ~0.25 s of
    CPU, which was most of a scan's cost on Dockyard's side (bench/scan_all_bench.py)."""
    return TokenAuthority(pem, issuer=issuer, service=service, ttl_seconds=ttl_seconds)


async def pull_credential(ctx: JobContext, requester: str, repository: str) -> str:
    """A bearer token that may pull ``repository`` only, for ``requester``, short-lived.

    It names ``scanner-pull`` too (Harbor's scanner robot holds that action), so the pull
    policies (content trust, vulnerability prevention) let the scanner read what it must
    scan."""
    settings = ctx.env.settings
    authority = _authority(
        await load_token_key(ctx.env.db),
        settings.token_issuer,
        settings.token_service,
        settings.token_expiration_minutes * 60,
    )
    ttl = int(min(settings.scan_timeout_seconds + 60, settings.token_expiration_minutes * 60))
    issued = authority.issue(
        requester,
        [Scope("repository", repository, frozenset({"pull", "scanner-pull"}))],
        ttl_seconds=ttl,
    )
    return "Bearer " + issued.token


async def _prepare(ctx: JobContext, params: Mapping[str, Any]) -> tuple[Endpoint, bool, str]:
    """The adapter to call; the report is marked ``Running``."""
    async with ctx.env.db.write() as session:
        registration = await registrations.find_by_uuid(session, str(params["registration_uuid"]))
        report = await reports.mark(session, str(params["report_uuid"]), reports.RUNNING)
        if report is None:
            raise PermanentJobError("a newer scan of this artifact replaced this one")
        if registration is None:
            raise AdapterError("the scanner registration was deleted")
        if registration.disabled:
            raise AdapterError(f"scanner {registration.name!r} is disabled")
        endpoint = await registrations.endpoint(session, registration)
        return endpoint, registration.use_internal_addr, registration.name


async def _poll(
    ctx: JobContext, client: AdapterClient, scan_id: str, mime: str, deadline: float
) -> bytes:
    polls = 0
    while True:
        answer = await client.report(scan_id, mime)
        if not isinstance(answer, ReportPending):
            ctx.log(f"report received ({len(answer)} bytes) after {polls} polls")
            return answer
        polls += 1
        if time.monotonic() + answer.refresh_after > deadline:
            raise AdapterError(
                f"no report within {ctx.env.settings.scan_timeout_seconds:g} s (time limit)"
            )
        await ctx.checkpoint()  # a stop asked meanwhile ends the task here
        await asyncio.sleep(answer.refresh_after)


async def _scan(ctx: JobContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
    settings = ctx.env.settings
    deadline = time.monotonic() + settings.scan_timeout_seconds
    endpoint, internal, name = await _prepare(ctx, params)
    ctx.log(f"attempt {ctx.attempt}: scanner {name!r} at {endpoint.url}")
    outbound = OutboundClient.for_targets(settings)
    # The scan's calls share one kept-alive connection: three connections per scan were a
    # good part of both sides' CPU, and the report request then reaches the adapter process
    # that took the scan (another process must look the scan up in the database).
    async with outbound.session(verify_tls=not endpoint.skip_cert_verify) as session:
        client = AdapterClient(endpoint, session)
        scanner, scan_id, body = await _ask(ctx, params, client, internal, name, deadline)
    await _store(ctx, params, scanner, body)
    return {"scan_request_id": scan_id}


async def _ask(
    ctx: JobContext,
    params: Mapping[str, Any],
    client: AdapterClient,
    internal: bool,
    name: str,
    deadline: float,
) -> tuple[AdapterScanner, str, bytes]:
    """The adapter's metadata checked, the scan asked for and its report polled for: (the
    scanner, the scan request's id, the report's bytes)."""
    settings = ctx.env.settings
    scan_type = str(params["scan_type"])
    mime = str(params["mime_type"])
    metadata = await client.metadata()
    scanner = metadata.scanner
    ctx.log(f"adapter: {scanner.name} {scanner.version} ({scanner.vendor})")
    media_type = str(params["media_type"])
    found = capabilities_mimes(metadata, scan_type, media_type)
    if not found:
        raise AdapterError(
            f"scanner {name!r} does not make {mime!r} reports for {media_type!r} artifacts"
        )
    if found[0] != mime:  # an adapter of API v1.0: its older report, stored as ours
        ctx.log(f"the adapter makes {found[0]!r} reports only (scanner API v1.0); asking for that")
    asked = found[0]
    repository = str(params["repository"])
    url = registry_url(settings, internal)
    capability: dict[str, Any] = {"type": scan_type, "produces_mime_types": [asked]}
    if scan_type == SBOM:
        capability["parameters"] = {"sbom_media_types": [SBOM_MEDIA_TYPE]}
    request = {
        "registry": {
            "url": url,
            "authorization": await pull_credential(ctx, str(params["requester"]), repository),
        },
        "artifact": {
            "repository": repository,
            "digest": str(params["digest"]),
            "tag": str(params.get("tag") or ""),
            "mime_type": media_type,
        },
        "enabled_capabilities": [capability],
    }
    ctx.log(f"POST /scan: {repository}@{params['digest']} from {url}")
    scan_id = await client.scan(request)
    ctx.log(f"scan request {scan_id} accepted")
    return scanner, scan_id, await _poll(ctx, client, scan_id, asked, deadline)


async def _store(
    ctx: JobContext, params: Mapping[str, Any], scanner: AdapterScanner, body: bytes
) -> None:
    scan_type = str(params["scan_type"])
    parsed = parse_report(scan_type, body)
    sbom_digest = ""
    if isinstance(parsed, str):
        ctx.log(f"SBOM read ({len(parsed)} bytes)")
        sbom_digest = await _push_sbom(ctx, params, parsed)
    else:
        found = parsed.vulnerabilities or []
        overall, _ = reports.summarise(found)
        ctx.log(f"report read: {len(found)} vulnerabilities, overall severity {overall}")
    # The log goes first, so whoever sees the report sees its log too.
    await ctx.checkpoint()
    async with ctx.env.db.write() as session:
        report = await reports.current(session, str(params["report_uuid"]))
        if report is None:
            ctx.log("a newer scan replaced this one; its report is not kept")
            return
        if isinstance(parsed, str):
            await reports.store_sbom(session, report, scanner, parsed, sbom_digest)
            await _drop_older_sboms(ctx, session, params, sbom_digest)
        else:
            await reports.store_vulnerabilities(
                session, report, parsed.scanner or scanner, parsed.vulnerabilities or []
            )
        await announce(ctx, session, report)


def _actor(params: Mapping[str, Any]) -> Actor:
    return Actor(str(params.get("requester") or "scanner"), "-")


async def _push_sbom(ctx: JobContext, params: Mapping[str, Any], report: str) -> str:
    """The SBOM pushed as the artifact's ``harbor.sbom`` accessory (``scan/sbom.py``)."""
    repository, digest = str(params["repository"]), str(params["digest"])
    try:
        pushed = await sbom.push_accessory(
            ctx.env.registry,
            repository,
            digest,
            str(params.get("media_type") or ""),
            report,
            _actor(params),
        )
    except AppError as exc:
        raise AdapterError(f"the SBOM could not be stored as an accessory: {exc}") from None
    ctx.log(f"SBOM accessory {pushed} pushed to {repository}")
    return pushed


async def _drop_older_sboms(
    ctx: JobContext, session: AsyncSession, params: Mapping[str, Any], keep: str
) -> None:
    try:
        dropped = await sbom.drop_older(
            session, ctx.env.registry, int(params["artifact_id"]), keep, _actor(params)
        )
    except AppError as exc:
        raise AdapterError(f"the previous SBOM accessory could not be deleted: {exc}") from None
    if dropped:
        ctx.log(f"{dropped} previous SBOM accessory deleted")


async def _end(ctx: JobContext, report_uuid: str, status: str, message: str) -> None:
    """End the report ``status``, its log written first (whoever sees it sees why)."""
    with contextlib.suppress(JobStopped, LeaseLost):
        await ctx.checkpoint()
    async with ctx.env.db.write() as session:
        report = await reports.mark(session, report_uuid, status, message)
        if report is not None:
            await announce(ctx, session, report)


async def announce(ctx: JobContext, session: AsyncSession, report: ScanReport) -> None:
    """Send the scan's end (``EVENT_OF_STATUS``) to the webhook policies of the artifact's
    project that want it, in ``session`` (the transaction that ends the report): Harbor's
    artifact ``event_data`` naming the scanned artifact and the tag the scan was asked
    with, its ``scan_overview`` (``sbom_overview`` for an SBOM) as listings show it; the
    operator is whoever asked for the scan."""
    kind = EVENT_OF_STATUS.get(report.status)
    artifact = await session.get(Artifact, report.artifact_id)
    if kind is None or artifact is None:
        return
    policies = await webhooks.subscribed_policies(session, artifact.project_id, kind)
    if not policies:
        return
    tag = str(ctx.params.get("tag") or "") or None
    data = await webhooks.artifact_event_data(
        session,
        webhooks.registry_host(ctx.env.settings.public_url),
        artifact.project_id,
        artifact.repository_name,
        [(artifact.digest, tag)],
    )
    if report.mime_type == SBOM_MIME:
        overview = reports.sbom_overview(report).model_dump(mode="json", exclude_none=True)
        data["resources"][0]["sbom_overview"] = overview
    else:
        summary = reports.native_summary(report).model_dump(mode="json", exclude_none=True)
        data["resources"][0]["scan_overview"] = {report.mime_type: summary}
    operator = str(ctx.params.get("requester") or "")
    event = webhooks.new_event(kind, artifact.project_id, data, operator)
    await webhooks.enqueue_deliveries(session, policies, event)


async def scan(ctx: JobContext) -> Mapping[str, Any]:
    params = ctx.params
    try:
        report_uuid = str(params["report_uuid"])
        last_attempt = ctx.attempt >= int(params.get("max_attempts", 1))
        str(params["scan_type"]), str(params["registration_uuid"])
    except (KeyError, TypeError, ValueError):
        raise PermanentJobError("unreadable scan task") from None
    try:
        return await _scan(ctx, params)
    except AdapterError as exc:
        ctx.log(f"failed: {exc}")
        if exc.transient and not last_attempt:
            raise ScanFailed(str(exc)) from None
        await _end(ctx, report_uuid, reports.ERROR, str(exc))
        raise PermanentJobError(str(exc)) from None
    except JobStopped:
        await _end(ctx, report_uuid, reports.STOPPED, "stopped by user")
        raise
    except (ValidationError, KeyError, TypeError, ValueError) as exc:
        message = f"unreadable scan task: {type(exc).__name__}"
        await _end(ctx, report_uuid, reports.ERROR, message)
        raise PermanentJobError(message) from None


async def scan_all_task(ctx: JobContext) -> Mapping[str, Any]:
    """A ``SCAN_ALL`` task: the planner (``scanall.plan``), or one artifact's scan."""
    if ctx.params.get("plan"):
        return await scanall.plan(ctx)
    return await scan(ctx)


job_types: list[JobType] = [
    *(JobType(name, scan) for name in JOB_OF.values()),
    JobType(scanall.JOB_TYPE, scan_all_task, launcher=scanall.launch_scheduled),
    *export.job_types,
]

"""Console pages of scanning's administration (docs/console.md, "Scanning pages"):
Interrogation Services (scanner registrations, with test connection and scan all) and the
Security Hub. Each handler calls the service the REST API calls (``scan/registrations.py``,
``scan/scanall.py``, ``scan/securityhub.py``), which authorises the caller.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from dockyard.console.jobs import SCHEDULE_TYPES, schedule_field, schedule_view
from dockyard.console.projects import pages_of
from dockyard.console.repositories import artifact_url
from dockyard.console.scan_state import RANK, ScanState
from dockyard.console.web import PREFIX, Page, usage_percent, with_query
from dockyard.errors import BadRequestError
from dockyard.http.egress import EgressPolicy
from dockyard.http.outbound import OutboundClient
from dockyard.iam.policy import Action, Resource, can
from dockyard.jobs import schedules
from dockyard.projects import service as projects
from dockyard.scan import registrations, scanall, securityhub
from dockyard.scan.client import (
    AUTH_KINDS,
    AdapterClient,
    AdapterError,
    Endpoint,
)
from dockyard.scan.schemas import (
    ScannerRegistrationReq,
    ScannerRegistrationSettings,
)

SCANNERS = PREFIX + "/admin/interrogation-services"
SECURITY_HUB = PREFIX + "/admin/security-hub"
HUB_FIELDS = ("cve_id", "package", "repository_name", "tag")
"""The security hub's text filters (exact values, as the API's ``q``)."""


# --- administration: interrogation services -------------------------------------------------


def _egress(page: Page) -> EgressPolicy:
    return EgressPolicy.from_settings(page.state.settings)


async def _metadata(page: Page, endpoint: Endpoint) -> str:
    """The adapter's name and version, or a refusal with its reason (nothing is stored)."""
    client = AdapterClient(endpoint, OutboundClient.for_targets(page.state.settings))
    try:
        found = await client.metadata()
    except AdapterError as exc:
        raise BadRequestError(f"the scanner adapter could not be used: {exc}") from None
    return f"{found.scanner.name or '?'} {found.scanner.version or ''}".strip()


def _registration_form(page: Page) -> ScannerRegistrationReq:
    auth = page.field("auth")
    return ScannerRegistrationReq(
        name=page.field("name"),
        description=page.field("description"),
        url=page.field("url").strip(),
        auth=auth,
        access_credential=page.field("access_credential") if auth else "",
        skip_certVerify=page.checked("skip_cert_verify"),
        use_internal_addr=page.checked("use_internal_addr"),
        disabled=False,
    )


async def _scanners_page(page: Page, **extra: Any) -> Response:
    request = page.page_request()
    async with page.state.db.read() as session:
        found, total = await registrations.list_registrations(
            session, page.principal, None, "name", request
        )
        scan_all: dict[str, Any] | None = None
        if can(page.principal, Action.READ, Resource.SCAN_ALL, None):
            metrics = await scanall.scan_all_metrics(session, page.principal)
            schedule = await schedules.find_schedule(session, scanall.JOB_TYPE)
            scan_all = {
                "metrics": metrics,
                "percent": usage_percent(metrics.completed, metrics.total),
                "schedule": schedule_view(schedule),
                "types": SCHEDULE_TYPES,
                "may_run": can(page.principal, Action.CREATE, Resource.SCAN_ALL, None),
                "may_schedule": can(page.principal, Action.UPDATE, Resource.SCAN_ALL, None),
                "may_stop": can(page.principal, Action.STOP, Resource.SCAN_ALL, None),
            }
    return page.render(
        "scanning/scanners.html",
        section="scanners",
        scanners=found,
        paging=pages_of(total, request),
        auth_kinds=[k for k in AUTH_KINDS if k],
        list_url=lambda **p: with_query(SCANNERS, **p),
        form=extra.pop("form", None),
        scan_all=scan_all,
        **extra,
    )


async def scanner_list(page: Page) -> Response:
    return await _scanners_page(page)


async def create_scanner(page: Page) -> Response:
    body = _registration_form(page)
    async with page.state.db.write() as session:
        await registrations.create_registration(session, page.principal, body, _egress(page))
    return page.redirect(SCANNERS, "flash.scanner_added", name=body.name or "")


async def ping_new_scanner(page: Page) -> Response:
    """Test connection of the add form: asks the adapter's metadata, saves nothing, and
    renders the page again with the form as it was (the credential is not sent back)."""
    body = _registration_form(page)
    endpoint = registrations.ping_endpoint(
        page.principal,
        ScannerRegistrationSettings(
            name=body.name, url=body.url, auth=body.auth, access_credential=body.access_credential
        ),
        _egress(page),
    )
    form = body.model_dump(exclude={"access_credential"})
    try:
        answer = await _metadata(page, endpoint)
    except BadRequestError as exc:
        return await _scanners_page(page, form=form, ping_ok=False, ping_message=exc.message)
    return await _scanners_page(page, form=form, ping_ok=True, ping_message=answer)


async def scanner_action(page: Page) -> Response:
    """Per registration: ``ping`` (test connection), ``default``, ``disable``, ``enable``,
    ``delete``."""
    uuid, verb = page.path("scanner"), page.path("verb")
    if verb == "ping":
        async with page.state.db.read() as session:
            endpoint = await registrations.metadata_endpoint(session, page.principal, uuid)
            name = (await registrations.get_registration(session, uuid)).name
        answer = await _metadata(page, endpoint)
        return page.redirect(SCANNERS, "flash.scanner_reachable", name=name, answer=answer)
    if verb not in _SCANNER_FLASHES:
        raise BadRequestError(f"no scanner action {verb[:32]!r}")
    async with page.state.db.write() as session:
        if verb == "delete":
            deleted = await registrations.delete_registration(session, page.principal, uuid)
            name = deleted.name or ""
        elif verb == "default":
            await registrations.set_default(session, page.principal, uuid, True)
            name = (await registrations.get_registration(session, uuid)).name
        else:
            name = await _set_disabled(page, session, uuid, verb == "disable")
    return page.redirect(SCANNERS, _SCANNER_FLASHES[verb], name=name or "")


_SCANNER_FLASHES = {
    "default": "flash.scanner_default",
    "disable": "flash.scanner_disabled",
    "enable": "flash.scanner_enabled",
    "delete": "flash.scanner_deleted",
}


async def _set_disabled(page: Page, session: AsyncSession, uuid: str, disabled: bool) -> str:
    """Disable or enable through the update the API offers (the whole registration, with an
    empty credential, which keeps the stored one)."""
    projects.require(page.principal, Action.UPDATE, Resource.SCANNER, None)
    row = registrations.registration_view(await registrations.get_registration(session, uuid))
    await registrations.update_registration(
        session,
        page.principal,
        uuid,
        ScannerRegistrationReq(
            name=row.name,
            description=row.description,
            url=row.url,
            auth=row.auth,
            access_credential="",
            skip_certVerify=row.skip_certVerify,
            use_internal_addr=row.use_internal_addr,
            disabled=disabled,
        ),
        _egress(page),
    )
    return row.name or ""


# --- scan all -----------------------------------------------------------------------------


async def scan_all_now(page: Page) -> Response:
    async with page.state.db.write() as session:
        await scanall.start_scan_all(session, page.principal)
    return page.redirect(SCANNERS, "flash.scan_all_started")


async def stop_scan_all(page: Page) -> Response:
    async with page.state.db.write() as session:
        await scanall.stop_scan_all(session, page.principal)
    return page.redirect(SCANNERS, "flash.scan_all_stopped")


async def scan_all_schedule(page: Page) -> Response:
    """Set (a preset or a Custom cron) or remove (None) the scan all schedule."""
    spec = schedule_field(page)
    async with page.state.db.write() as session:
        await scanall.set_scan_all_schedule(
            session, page.principal, {"type": spec.cron_type, "cron": spec.cron}, create=False
        )
    return page.redirect(SCANNERS, "flash.scan_all_schedule_saved")


# --- the security hub ---------------------------------------------------------------------


def hub_query(page: Page) -> tuple[str, dict[str, str]]:
    """The API's ``q`` built from the search form, and the form's values (to show again).
    A comma would split a condition, so values are taken up to it."""
    values = {key: page.query(key).split(",")[0].strip()[:255] for key in HUB_FIELDS}
    severity = page.query("severity")
    values["severity"] = severity if severity in RANK else ""
    parts = [f"{key}={values[key]}" for key in (*HUB_FIELDS, "severity") if values[key]]
    low, high = page.query("cvss_from").strip()[:8], page.query("cvss_to").strip()[:8]
    values["cvss_from"], values["cvss_to"] = low, high
    if low or high:
        parts.append(f"cvss_score_v3=[{low or 0}~{high or 10}]")
    return ",".join(parts), values


def artifact_link(repository_name: str, digest: str) -> str:
    project, _, inner = repository_name.partition("/")
    return artifact_url(project, inner, digest) if inner else ""


async def security_hub(page: Page) -> Response:
    """Administration → Security Hub: the summary (counts per severity, fixable, scanned
    artifacts, the five most dangerous CVEs and artifacts) and the vulnerability search."""
    q, values = hub_query(page)
    request = page.page_request()
    problem = ""
    async with page.state.db.read() as session:
        summary = await securityhub.security_summary(
            session, page.principal, with_dangerous_cve=True, with_dangerous_artifact=True
        )
        try:
            found = await securityhub.list_vulnerabilities(
                session, page.principal, q or None, request, tune_count=True, with_tag=True
            )
        except BadRequestError as exc:
            problem = exc.message
            found = securityhub.VulnerabilityPage([], 0)
    counts = [
        ("Critical", summary.critical_cnt),
        ("High", summary.high_cnt),
        ("Medium", summary.medium_cnt),
        ("Low", summary.low_cnt),
        ("Unknown", summary.unknown_cnt),
    ]
    total = max(summary.total_vuls, 1)
    return page.render(
        "scanning/security_hub.html",
        section="security_hub",
        summary=summary,
        bar=ScanState(
            "Success",
            total=summary.total_vuls,
            fixable=summary.fixable_cnt,
            counts=[(s, n, max(1, round(n * 100 / total))) for s, n in counts if n > 0],
        ),
        counts=counts,
        items=found.items,
        total=found.total,
        paging=pages_of(max(found.total, 0), request),
        values=values,
        problem=problem,
        searched=bool(q),
        artifact_link=artifact_link,
        list_url=lambda **p: with_query(SECURITY_HUB, **values, **p),
    )

"""``/api/v2.0/scanners`` (swagger tag ``scanner``), the project scanner and the scan
operations of an artifact (tag ``scan``).

Scanner registrations are the system admin's (``scanner`` at system level); the
project's scanner is read by members and set by project admins. Calls to an adapter
(``ping``, ``metadata``) are made with no transaction open; what an adapter gets wrong
is a 400 naming the call and the adapter's words, never a 500.
"""

from __future__ import annotations

from urllib.parse import unquote

from pydantic import ValidationError
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from dockyard.errors import BadRequestError
from dockyard.http.api import (
    ApiRequest,
    Operation,
    created_response,
    empty_response,
    json_response,
    operation,
    paged_response,
)
from dockyard.http.egress import EgressPolicy
from dockyard.http.outbound import OutboundClient
from dockyard.jobs.schemas import Schedule
from dockyard.scan import export, registrations, scanall, securityhub, service
from dockyard.scan.client import AdapterClient, AdapterError, Endpoint
from dockyard.scan.schemas import (
    IsDefault,
    ProjectScanner,
    Scanner,
    ScannerAdapterMetadata,
    ScannerCapability,
    ScannerRegistration,
    ScannerRegistrationReq,
    ScannerRegistrationSettings,
    ScanType,
    SecuritySummary,
    SecurityVulnerability,
    Stats,
)

SCANNERS = "/scanners"
SCANNER = SCANNERS + "/{registration_id}"
PROJECT_SCANNER = "/projects/{project_name_or_id}/scanner"
ARTIFACT = "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}"
LISTING = ("q", "sort", "page", "page_size")


def _egress(api: ApiRequest) -> EgressPolicy:
    return EgressPolicy.from_settings(api.state.settings)


def _project(api: ApiRequest) -> tuple[str, bool]:
    flag = (api.header("X-Is-Resource-Name") or "").strip().lower()
    return api.path("project_name_or_id"), flag in ("true", "1")


def _artifact(api: ApiRequest) -> tuple[str, str, str]:
    return (
        api.path("project_name"),
        unquote(api.path("repository_name")),
        api.path("reference"),
    )


async def _adapter_metadata(api: ApiRequest, endpoint: Endpoint) -> ScannerAdapterMetadata:
    client = AdapterClient(endpoint, OutboundClient.for_targets(api.state.settings))
    try:
        found = await client.metadata()
    except AdapterError as exc:
        raise BadRequestError(f"the scanner adapter could not be used: {exc}") from None
    return ScannerAdapterMetadata(
        scanner=Scanner(
            name=found.scanner.name, vendor=found.scanner.vendor, version=found.scanner.version
        ),
        capabilities=[
            ScannerCapability(
                type=c.type,
                consumes_mime_types=c.consumes_mime_types,
                produces_mime_types=c.produces_mime_types,
            )
            for c in found.capabilities
        ],
        properties=found.properties or {},
    )


# --- registrations -------------------------------------------------------------------------


@operation("GET", SCANNERS, "listScanners", query=LISTING, response=list[ScannerRegistration])
async def list_scanners(api: ApiRequest) -> Response:
    principal = await api.principal()
    page = api.page()
    async with api.state.db.read() as session:
        items, total = await registrations.list_registrations(
            session, principal, api.query("q"), api.query("sort"), page
        )
    return paged_response(api, items, total, page)


@operation("POST", SCANNERS, "createScanner", body=ScannerRegistrationReq, status=201)
async def create_scanner(api: ApiRequest) -> Response:
    """Register an adapter; its credential is sealed at rest and never shown again."""
    principal = await api.principal()
    body = await api.json(ScannerRegistrationReq)
    async with api.state.db.write() as session:
        registration_id = await registrations.create_registration(
            session, principal, body, _egress(api)
        )
    return created_response(f"{api.request.url.path.rstrip('/')}/{registration_id}")


@operation("GET", SCANNER, "getScanner", response=ScannerRegistration)
async def get_scanner(api: ApiRequest) -> Response:
    principal = await api.principal()
    async with api.state.db.read() as session:
        found = await registrations.show_registration(
            session, principal, api.path("registration_id")
        )
    return json_response(found)


@operation("PUT", SCANNER, "updateScanner", body=ScannerRegistrationReq)
async def update_scanner(api: ApiRequest) -> Response:
    """Replace a registration; an empty credential keeps the stored one."""
    principal = await api.principal()
    body = await api.json(ScannerRegistrationReq)
    async with api.state.db.write() as session:
        await registrations.update_registration(
            session, principal, api.path("registration_id"), body, _egress(api)
        )
    return empty_response()


@operation("DELETE", SCANNER, "deleteScanner", response=ScannerRegistration)
async def delete_scanner(api: ApiRequest) -> Response:
    principal = await api.principal()
    async with api.state.db.write() as session:
        deleted = await registrations.delete_registration(
            session, principal, api.path("registration_id")
        )
    return json_response(deleted)


@operation("PATCH", SCANNER, "setScannerAsDefault", body=IsDefault)
async def set_scanner_as_default(api: ApiRequest) -> Response:
    principal = await api.principal()
    body = await api.json(IsDefault)
    async with api.state.db.write() as session:
        await registrations.set_default(
            session, principal, api.path("registration_id"), bool(body.is_default)
        )
    return empty_response()


@operation("POST", SCANNERS + "/ping", "pingScanner", body=ScannerRegistrationSettings)
async def ping_scanner(api: ApiRequest) -> Response:
    """Ask an adapter for its metadata before registering it; 400 with the reason when it
    cannot be used."""
    principal = await api.principal()
    body = await api.json(ScannerRegistrationSettings)
    endpoint = registrations.ping_endpoint(principal, body, _egress(api))
    await _adapter_metadata(api, endpoint)
    return empty_response()


@operation("GET", SCANNER + "/metadata", "getScannerMetadata", response=ScannerAdapterMetadata)
async def get_scanner_metadata(api: ApiRequest) -> Response:
    principal = await api.principal()
    async with api.state.db.read() as session:
        endpoint = await registrations.metadata_endpoint(
            session, principal, api.path("registration_id")
        )
    return json_response(await _adapter_metadata(api, endpoint))


# --- the project's scanner -----------------------------------------------------------------


@operation("GET", PROJECT_SCANNER, "getScannerOfProject", response=ScannerRegistration)
async def get_scanner_of_project(api: ApiRequest) -> Response:
    principal = await api.principal()
    async with api.state.db.read() as session:
        found = await registrations.project_scanner(session, principal, *_project(api))
    return json_response(found)


@operation("PUT", PROJECT_SCANNER, "setScannerOfProject", body=ProjectScanner)
async def set_scanner_of_project(api: ApiRequest) -> Response:
    principal = await api.principal()
    body = await api.json(ProjectScanner)
    async with api.state.db.write() as session:
        await registrations.set_project_scanner(session, principal, *_project(api), body)
    return empty_response()


@operation(
    "GET",
    PROJECT_SCANNER + "/candidates",
    "listScannerCandidatesOfProject",
    query=LISTING,
    response=list[ScannerRegistration],
)
async def list_scanner_candidates(api: ApiRequest) -> Response:
    principal = await api.principal()
    page = api.page()
    async with api.state.db.read() as session:
        items, total = await registrations.scanner_candidates(
            session, principal, *_project(api), api.query("q"), api.query("sort"), page
        )
    return paged_response(api, items, total, page)


# --- scans ---------------------------------------------------------------------------------


async def _scan_type(api: ApiRequest) -> str:
    raw = await api.raw_body()
    if not raw.strip():
        return service.scan_type_of(None)
    try:
        body = ScanType.model_validate_json(raw)
    except ValidationError:
        raise BadRequestError('the body must be {"scan_type": "vulnerability" or "sbom"}') from None
    return service.scan_type_of(body.scan_type)


@operation("POST", ARTIFACT + "/scan", "scanArtifact", body=ScanType, status=202)
async def scan_artifact(api: ApiRequest) -> Response:
    """Scan an artifact (an index: each of its children) with the project's scanner."""
    principal = await api.principal()
    scan_type = await _scan_type(api)
    async with api.state.db.write() as session:
        await service.scan_artifact(session, principal, *_artifact(api), scan_type)
    return empty_response(202)


@operation("POST", ARTIFACT + "/scan/stop", "stopScanArtifact", body=ScanType, status=202)
async def stop_scan_artifact(api: ApiRequest) -> Response:
    principal = await api.principal()
    scan_type = await _scan_type(api)
    async with api.state.db.write() as session:
        await service.stop_scan(session, principal, *_artifact(api), scan_type)
    return empty_response(202)


@operation("GET", ARTIFACT + "/scan/{report_id}/log", "getReportLog")
async def get_report_log(api: ApiRequest) -> Response:
    principal = await api.principal()
    async with api.state.db.read() as session:
        text = await service.report_log(session, principal, *_artifact(api), api.path("report_id"))
    return PlainTextResponse(text)


# --- scan all ------------------------------------------------------------------------------

SCAN_ALL_SCHEDULE = "/system/scanAll/schedule"


@operation("GET", SCAN_ALL_SCHEDULE, "getScanAllSchedule", response=Schedule)
async def get_scan_all_schedule(api: ApiRequest) -> Response:
    principal = await api.principal()
    async with api.state.db.read() as session:
        view = await scanall.scan_all_schedule(session, principal)
    return json_response(view)


async def _set_scan_all_schedule(api: ApiRequest, *, create: bool) -> None:
    principal = await api.principal()
    body = await api.json(Schedule)
    obj = body.schedule.model_dump(exclude_none=True) if body.schedule is not None else None
    async with api.state.db.write() as session:
        await scanall.set_scan_all_schedule(session, principal, obj, body.parameters, create=create)


@operation("POST", SCAN_ALL_SCHEDULE, "createScanAllSchedule", body=Schedule, status=201)
async def create_scan_all_schedule(api: ApiRequest) -> Response:
    """Type ``Manual`` runs scan all now; a preset or ``Custom`` sets its schedule."""
    await _set_scan_all_schedule(api, create=True)
    return created_response("/api/v2.0" + SCAN_ALL_SCHEDULE)


@operation("PUT", SCAN_ALL_SCHEDULE, "updateScanAllSchedule", body=Schedule)
async def update_scan_all_schedule(api: ApiRequest) -> Response:
    await _set_scan_all_schedule(api, create=False)
    return empty_response()


@operation("POST", "/system/scanAll/stop", "stopScanAll", status=202)
async def stop_scan_all(api: ApiRequest) -> Response:
    principal = await api.principal()
    async with api.state.db.write() as session:
        await scanall.stop_scan_all(session, principal)
    return empty_response(202)


@operation("GET", "/scans/all/metrics", "getLatestScanAllMetrics", response=Stats)
async def get_latest_scan_all_metrics(api: ApiRequest) -> Response:
    principal = await api.principal()
    async with api.state.db.read() as session:
        stats = await scanall.scan_all_metrics(session, principal)
    return json_response(stats)


@operation("GET", "/scans/schedule/metrics", "getLatestScheduledScanAllMetrics", response=Stats)
async def get_latest_scheduled_scan_all_metrics(api: ApiRequest) -> Response:
    principal = await api.principal()
    async with api.state.db.read() as session:
        stats = await scanall.scan_all_metrics(session, principal, scheduled_only=True)
    return json_response(stats)


# --- CVE export -----------------------------------------------------------------------------


@operation("POST", "/export/cve", "exportScanData", body=export.ExportRequest)
async def export_scan_data(api: ApiRequest) -> Response:
    """Start a CSV export of one project's findings (``export.request_export``)."""
    principal = await api.principal()
    body = export.parse_request(await api.raw_body())
    async with api.state.db.write() as session:
        execution = await export.request_export(
            session, principal, body, api.header("X-Scan-Data-Type")
        )
    return json_response({"id": execution.id})


@operation(
    "GET",
    "/export/cve/execution/{execution_id}",
    "getScanDataExportExecution",
    response=export.ExportExecution,
)
async def get_scan_data_export_execution(api: ApiRequest) -> Response:
    principal = await api.principal()
    execution_id = api.path_int("execution_id")
    async with api.state.db.read() as session:
        view = await export.get_export(session, principal, execution_id, api.state.storage)
    return json_response(view)


@operation("GET", "/export/cve/executions", "getScanDataExportExecutionList")
async def get_scan_data_export_execution_list(api: ApiRequest) -> Response:
    principal = await api.principal()
    async with api.state.db.read() as session:
        items = await export.list_exports(session, principal, api.state.storage)
    return json_response({"items": items})


@operation("GET", "/export/cve/download/{execution_id}", "downloadScanData", query=("format",))
async def download_scan_data(api: ApiRequest) -> Response:
    """The CSV, to its owner only."""
    principal = await api.principal()
    execution_id = api.path_int("execution_id")
    if (api.query("format") or "csv").lower() != "csv":
        raise BadRequestError("format must be csv")
    async with api.state.db.read() as session:
        found = await export.export_file(session, principal, execution_id, api.state.storage)
    return StreamingResponse(
        api.state.storage.read(found.key),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{found.filename}"'},
    )


# --- the security hub -----------------------------------------------------------------------


@operation(
    "GET",
    "/security/summary",
    "getSecuritySummary",
    query=("with_dangerous_cve", "with_dangerous_artifact"),
    response=SecuritySummary,
)
async def get_security_summary(api: ApiRequest) -> Response:
    principal = await api.principal()
    with_cve = api.query_bool("with_dangerous_cve")
    with_artifact = api.query_bool("with_dangerous_artifact")
    async with api.state.db.read() as session:
        summary = await securityhub.security_summary(
            session,
            principal,
            with_dangerous_cve=with_cve,
            with_dangerous_artifact=with_artifact,
        )
    return json_response(summary)


@operation(
    "GET",
    "/security/vul",
    "ListVulnerabilities",
    query=("q", "page", "page_size", "tune_count", "with_tag"),
    response=list[SecurityVulnerability],
)
async def list_vulnerabilities(api: ApiRequest) -> Response:
    principal = await api.principal()
    page = api.page()
    tune_count = api.query_bool("tune_count")
    with_tag = api.query_bool("with_tag")
    async with api.state.db.read() as session:
        found = await securityhub.list_vulnerabilities(
            session, principal, api.query("q"), page, tune_count=tune_count, with_tag=with_tag
        )
    if found.total >= 0:
        return paged_response(api, found.items, found.total, page)
    # Past TUNE_COUNT_LIMIT the count is -1 but the pages go on: Link from what is known.
    seen = (page.page - 1) * page.page_size + len(found.items) + int(found.more)
    response = paged_response(api, found.items, seen, page)
    response.headers["X-Total-Count"] = "-1"
    return response


operations: list[Operation] = [
    list_scanners,
    create_scanner,
    get_scanner,
    update_scanner,
    delete_scanner,
    set_scanner_as_default,
    ping_scanner,
    get_scanner_metadata,
    get_scanner_of_project,
    set_scanner_of_project,
    list_scanner_candidates,
    scan_artifact,
    stop_scan_artifact,
    get_report_log,
    get_scan_all_schedule,
    create_scan_all_schedule,
    update_scan_all_schedule,
    stop_scan_all,
    get_latest_scan_all_metrics,
    get_latest_scheduled_scan_all_metrics,
    export_scan_data,
    get_scan_data_export_execution,
    get_scan_data_export_execution_list,
    download_scan_data,
    get_security_summary,
    list_vulnerabilities,
]

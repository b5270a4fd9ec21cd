"""The built-in scanner's adapter face: Harbor's scanner adapter API v1.2 under
``/scanner/v1`` (``GET /metadata``, ``POST /scan``, ``GET /scan/{id}/report``).

Served only with ``scanner_adapter_enabled``; with ``scanner_adapter_api_key`` every call must
carry the key in one of the auth kinds a Harbor registration sends (Bearer, Basic password,
``X-ScannerAdapter-API-Key``). Errors are the spec's ``ErrorResponse``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.http.state import get_state

from .adapter import (
    ERROR,
    SUCCESS,
    AdapterScans,
    ScanRequestError,
    dockyard_version,
    metadata,
    parse_scan_request,
    sbom_document,
)
from .report import SCANNER_NAME, SCANNER_VENDOR

PREFIX = "/scanner/v1"
ERROR_MIME = "application/vnd.scanner.adapter.error+json; version=1.0"
METADATA_MIME = "application/vnd.scanner.adapter.metadata+json; version=1.1"
SCAN_RESPONSE_MIME = "application/vnd.scanner.adapter.scan.response+json; version=1.0"
VULN_MIMES = (
    "application/vnd.security.vulnerability.report; version=1.1",
    "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0",
)
SBOM_MIME = "application/vnd.security.sbom.report+json; version=1.0"
SBOM_MEDIA_TYPES = ("application/spdx+json", "application/vnd.cyclonedx+json")
REFRESH_AFTER_SECONDS = 2
MAX_BODY = 64 << 10


def _error(status: int, message: str) -> Response:
    body = json.dumps({"error": {"message": message}})
    return Response(body, status_code=status, media_type=ERROR_MIME)


def _json(doc: Any, media_type: str, status: int = 200) -> Response:
    return Response(json.dumps(doc), status_code=status, media_type=media_type)


def _scans(request: Request) -> AdapterScans:
    scans: AdapterScans = request.app.state.scanner_adapter
    return scans


def _authorised(request: Request) -> bool:
    key = get_state(request).settings.scanner_adapter_api_key
    if not key:
        return True
    offered: list[str] = []
    if given := request.headers.get("x-scanneradapter-api-key"):
        offered.append(given)
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        offered.append(value.strip())
    elif scheme.lower() == "basic":
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            offered.append(
                base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
            )
    return any(hmac.compare_digest(o.encode(), key.encode()) for o in offered)


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        if not _authorised(request):
            response = _error(401, "the scanner adapter's API key is missing or wrong")
            response.headers["WWW-Authenticate"] = 'Bearer realm="dockyard-scanner"'
            return response
        return await handler(request)

    return guarded


async def get_metadata(request: Request) -> Response:
    """``GET /metadata``: the scanner and its capabilities."""
    return _json(metadata(await _scans(request).database_updated_at()), METADATA_MIME)


async def accept_scan_request(request: Request) -> Response:
    """``POST /scan``: accept a scan of an artifact; the scan runs in the background."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return _error(400, f"the body is larger than {MAX_BODY} bytes")
    try:
        scan = parse_scan_request(bytes(body))
    except ScanRequestError as exc:
        return _error(exc.status, exc.message)
    scan_id = await _scans(request).submit(scan)
    return _json({"id": scan_id}, SCAN_RESPONSE_MIME, status=202)


def _accepted(request: Request) -> str | None:
    wanted = request.headers.get("accept", "").replace(" ", "").lower()
    if wanted in ("", "*/*", "application/json"):
        return VULN_MIMES[0]
    for mime in (*VULN_MIMES, SBOM_MIME):
        if mime.replace(" ", "") == wanted:
            return mime
    return None


async def get_scan_report(request: Request) -> Response:
    """``GET /scan/{id}/report``: the report, 302 + ``Refresh-After`` while it runs."""
    mime = _accepted(request)
    if mime is None:
        return _error(
            400,
            "Accept names no report this scanner produces ("
            + ", ".join((*VULN_MIMES, SBOM_MIME))
            + ")",
        )
    media_type = request.query_params.get("sbom_media_type", "")
    if mime == SBOM_MIME and media_type not in SBOM_MEDIA_TYPES:
        return _error(400, "an SBOM report needs sbom_media_type: " + " or ".join(SBOM_MEDIA_TYPES))
    scan_id = request.path_params["scan_request_id"]
    scans = _scans(request)
    found = await scans.find(scan_id) if len(scan_id) <= 36 else None
    if found is not None and found.status not in (SUCCESS, ERROR):
        await scans.wait(scan_id)  # answer with the report the moment it is stored
        found = await scans.find(scan_id)
    if found is None:
        return _error(404, f"no scan request {scan_id[:64]!r}")
    if found.status == ERROR:
        # A scan that failed is the adapter's answer, not a fault of this server: 422 with
        # the reason (Harbor's client takes any status other than 200 and 302 as the error).
        return _error(422, f"the scan failed: {found.message}")
    if found.status != SUCCESS:
        return Response(status_code=302, headers={"Refresh-After": str(REFRESH_AFTER_SECONDS)})
    if mime != SBOM_MIME:
        return Response(found.report, media_type=mime)
    doc = {
        "generated_at": found.update_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "artifact": {"repository": found.repository, "digest": found.digest},
        "scanner": {"name": SCANNER_NAME, "vendor": SCANNER_VENDOR, "version": dockyard_version},
        "media_type": media_type,
        "sbom": sbom_document(found.inventory, media_type),
    }
    return _json(doc, SBOM_MIME)


def adapter_routes() -> list[Route]:
    """The adapter's routes (the app adds them only with ``scanner_adapter_enabled``)."""
    return [
        Route(f"{PREFIX}/metadata", _guarded(get_metadata), methods=["GET"]),
        Route(f"{PREFIX}/scan", _guarded(accept_scan_request), methods=["POST"]),
        Route(
            f"{PREFIX}/scan/{{scan_request_id}}/report",
            _guarded(get_scan_report),
            methods=["GET"],
        ),
    ]

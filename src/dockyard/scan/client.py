"""The client of the scanner adapter API v1.2 (``scanner-adapter-openapi.yaml``).

Every call goes through the capped outbound client (``http/outbound.py``), so the egress
policy that refuses webhook targets refuses scanner URLs the same way, and each call has
one total deadline. What an adapter answers is read and checked here; anything it gets
wrong becomes an ``AdapterError`` whose message names the call and what was wrong, and
whose ``transient`` flag says whether trying again later might help (a network failure,
a timeout, a 5xx, a 429) or not (a 4xx, a body that is not the spec's JSON).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from dockyard.http.outbound import (
    OutboundClient,
    OutboundError,
    OutboundRefused,
    OutboundResponse,
    OutboundSession,
)
from dockyard.scan.schemas import AdapterMetadata, ScanResponse, VulnerabilityReport

API_MIME = "application/vnd.scanner.adapter.scan.request+json; version=1.0"
METADATA_MIME = "application/vnd.scanner.adapter.metadata+json; version=1.0"
VULNERABILITY_MIME = "application/vnd.security.vulnerability.report; version=1.1"
"""The vulnerability report Dockyard asks for (Harbor's native report, v1.1)."""
VULNERABILITY_MIME_V1_0 = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
"""Harbor's native report v1.0, all that adapters of API v1.0 make (same shape as v1.1)."""
SBOM_MIME = "application/vnd.security.sbom.report+json; version=1.0"
SBOM_MEDIA_TYPE = "application/spdx+json"
"""The SBOM format asked for (Harbor asks for SPDX too)."""
VULNERABILITY = "vulnerability"
SBOM = "sbom"
SCAN_TYPES = {VULNERABILITY: VULNERABILITY_MIME, SBOM: SBOM_MIME}
AUTH_KINDS = ("", "Basic", "Bearer", "X-ScannerAdapter-API-Key")
METADATA_MAX_BYTES = 256 * 1024
REPORT_MAX_BYTES = 64 * 1024 * 1024
"""The largest report read from an adapter; a longer one is a scan error, not a crash."""
_MESSAGE_CHARS = 512
_M = TypeVar("_M", bound=BaseModel)


class AdapterError(Exception):
    """The adapter could not be used; ``str()`` is safe to show (it holds no credential)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where an adapter is and how to sign in to it (the credential opened)."""

    url: str
    auth: str = ""
    credential: str = ""
    skip_cert_verify: bool = False


@dataclass(frozen=True, slots=True)
class ReportPending:
    """``302``: not ready; ask again after ``refresh_after`` seconds."""

    refresh_after: float


def auth_headers(auth: str, credential: str) -> dict[str, str]:
    """The headers that sign in to an adapter, as Harbor sends them: ``Basic`` takes
    ``user:password``, ``Bearer`` a token, the API key goes in its own header."""
    if not auth or not credential:
        return {}
    if auth == "Basic":
        return {"Authorization": "Basic " + base64.b64encode(credential.encode()).decode()}
    if auth == "Bearer":
        return {"Authorization": "Bearer " + credential}
    return {"X-ScannerAdapter-API-Key": credential}


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + path


def _adapter_message(response: OutboundResponse) -> str:
    """The adapter's own error message (``{"error":{"message":…}}``), else the body's start."""
    try:
        body = json.loads(response.head) if response.complete else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:_MESSAGE_CHARS]
    return response.head_text(_MESSAGE_CHARS) or "(no body)"


def _check_status(what: str, response: OutboundResponse, ok: tuple[int, ...]) -> None:
    if response.status_code in ok:
        return
    transient = response.status_code >= 500 or response.status_code in (408, 429)
    raise AdapterError(
        f"{what}: the adapter answered {response.status_code}: {_adapter_message(response)}",
        transient=transient and response.status_code != 501,
    )


def _first(exc: ValidationError) -> str:
    """Where the first problem is and what it is (never the value: it may be long)."""
    errors = exc.errors()
    if not errors:
        return "invalid"
    where = ".".join(str(p) for p in errors[0]["loc"]) or "body"
    return f"{where}: {errors[0]['msg']}"


def parse_json(what: str, response: OutboundResponse, model: type[_M]) -> _M:
    if not response.complete:
        raise AdapterError(f"{what}: the answer is longer than {len(response.head)} bytes")
    try:
        return model.model_validate_json(response.head)
    except ValidationError as exc:
        raise AdapterError(
            f"{what}: the adapter's answer is not the spec's JSON ({_first(exc)})"
        ) from None


class AdapterClient:
    """Calls one adapter; one instance per scan or per API call. It holds no connection of
    its own: given an ``OutboundSession`` (a scan's calls), its calls share one kept-alive
    connection; given an ``OutboundClient``, each call connects afresh."""

    def __init__(self, endpoint: Endpoint, outbound: OutboundClient | OutboundSession) -> None:
        self.endpoint = endpoint
        self.outbound = outbound

    async def _call(
        self,
        what: str,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes = b"",
        max_body: int,
    ) -> OutboundResponse:
        sent = {**auth_headers(self.endpoint.auth, self.endpoint.credential), **(headers or {})}
        try:
            return await self.outbound.request(
                method,
                _join(self.endpoint.url, path),
                headers=sent,
                content=content,
                verify_tls=not self.endpoint.skip_cert_verify,
                max_body=max_body,
            )
        except OutboundRefused as exc:
            raise AdapterError(f"{what}: not contacted: {exc}") from None
        except OutboundError as exc:
            raise AdapterError(f"{what}: {exc}", transient=True) from None

    async def metadata(self) -> AdapterMetadata:
        what = "GET /metadata"
        response = await self._call(
            what,
            "GET",
            "/metadata",
            headers={"Accept": METADATA_MIME + ", application/json"},
            max_body=METADATA_MAX_BYTES,
        )
        _check_status(what, response, (200,))
        return parse_json(what, response, AdapterMetadata)

    async def scan(self, request: dict[str, Any]) -> str:
        """``POST /scan``; the adapter's scan request id."""
        what = "POST /scan"
        response = await self._call(
            what,
            "POST",
            "/scan",
            headers={"Content-Type": API_MIME, "Accept": "application/json"},
            content=json.dumps(request).encode(),
            max_body=METADATA_MAX_BYTES,
        )
        _check_status(what, response, (200, 201, 202))
        return parse_json(what, response, ScanResponse).id

    async def report(self, scan_id: str, mime_type: str) -> bytes | ReportPending:
        """``GET /scan/{id}/report`` in ``mime_type``: the report's bytes, or when to ask again."""
        what = "GET /scan/{id}/report"
        path = f"/scan/{quote(scan_id, safe='')}/report"
        if mime_type == SBOM_MIME:
            path += "?sbom_media_type=" + quote(SBOM_MEDIA_TYPE, safe="")
        response = await self._call(
            what, "GET", path, headers={"Accept": mime_type}, max_body=REPORT_MAX_BYTES
        )
        if response.status_code == 302:
            return ReportPending(_refresh_after(response.header("Refresh-After")))
        _check_status(what, response, (200,))
        if not response.complete:
            raise AdapterError(
                f"{what}: the report is larger than {REPORT_MAX_BYTES} bytes or was cut off"
            )
        return response.head


def _refresh_after(raw: str | None) -> float:
    """``Refresh-After`` in seconds, kept between 0.2 s and a minute (a missing or silly value
    means one second)."""
    try:
        value = float(raw or "1")
    except ValueError:
        value = 1.0
    if value != value:  # NaN
        value = 1.0
    return min(max(value, 0.2), 60.0)


def capabilities_mimes(metadata: AdapterMetadata, scan_type: str, media_type: str) -> list[str]:
    """The report MIME types of ``scan_type`` Dockyard wants that the adapter makes for an
    artifact of ``media_type``, best first (empty: this adapter cannot do it). An adapter
    of API v1.0 (capabilities without ``type``, Harbor's report v1.0 only) is asked for
    that older report, which has the same shape."""
    wanted = [SCAN_TYPES[scan_type]]
    if scan_type == VULNERABILITY:
        wanted.append(VULNERABILITY_MIME_V1_0)
    for mime in wanted:
        for capability in metadata.capabilities:
            if capability.type != scan_type:
                continue
            if media_type not in capability.consumes_mime_types:
                continue
            if mime in capability.produces_mime_types:
                return [mime]
    return []


def parse_report(scan_type: str, body: bytes) -> VulnerabilityReport | str:
    """A vulnerability report checked against the spec, or an SBOM report as JSON text."""
    what = "GET /scan/{id}/report"
    try:
        if scan_type == SBOM:
            value = json.loads(body)
            if not isinstance(value, dict):
                raise AdapterError(f"{what}: the SBOM report is not a JSON object")
            return json.dumps(value, separators=(",", ":"))
        return VulnerabilityReport.model_validate_json(body)
    except ValidationError as exc:
        raise AdapterError(f"{what}: the report is not the spec's JSON ({_first(exc)})") from None
    except (ValueError, RecursionError):
        raise AdapterError(f"{what}: the report is not JSON") from None

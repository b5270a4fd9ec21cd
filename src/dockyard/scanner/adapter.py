"""The built-in scanner as a scanner adapter: scan requests, their runs, their results.

A request (``POST /scan``) is stored as a row and run at once as a task of this process:
pull the image (``pull.py``), read its packages (``inventory``), match them against the OSV
records (``service.py``), store the Harbor report and the inventory. The registry credential
lives only in the running task. A run that fails for any reason the image or the registry
gives ends in status ``Error`` with a sentence saying why; a run cut off by a restart is an
``Error`` too once its deadline has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.metadata
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import delete, select, update

from dockyard.db.engine import Database
from dockyard.http.egress import EgressPolicy
from dockyard.http.outbound import CheckedTransport, verifying_context
from dockyard.settings import Settings

from . import vulndb
from .inventory import (
    Inventory,
    Limits,
    OSRelease,
    Package,
    ainventory_layers,
    cyclonedx_json,
    spdx_json,
)
from .models import AdapterScan
from .pull import Budget, PullError, RegistryPuller, layer_digests, valid_digest, valid_repository
from .report import SCANNER_NAME, SCANNER_VENDOR, vulnerability_report
from .service import VulnCache, find_vulnerabilities

log = logging.getLogger("dockyard.scanner")


def _version() -> str:
    try:
        return importlib.metadata.version("dockyard")
    except importlib.metadata.PackageNotFoundError:
        return "0"


dockyard_version = _version()

PENDING, RUNNING, SUCCESS, ERROR = "Pending", "Running", "Success", "Error"
MAX_CONCURRENT_SCANS = 2
_WAIT_POLL_SECONDS = 0.1
REPORT_WAIT_SECONDS = 2.0
"""How long ``GET /scan/{id}/report`` holds a request for a running scan before answering
``302``: the report goes out the moment it is stored instead of after the next
``Refresh-After`` (2 s), which bounded a caller to one scan per 2 s per task. No longer than
that ``Refresh-After``, so a caller waits no more than it would have, and well under client
timeouts (Dockyard's ``outbound_timeout_seconds`` is 10 s)."""


class ScanRequestError(ValueError):
    """A scan request that cannot be run; ``status`` is 400 (not the right JSON) or 422."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ScanRequest:
    registry_url: str
    authorization: str
    repository: str
    digest: str
    tag: str = ""
    mime_type: str = ""

    @property
    def artifact(self) -> dict[str, str]:
        found = {"repository": self.repository, "digest": self.digest}
        if self.tag:
            found["tag"] = self.tag
        if self.mime_type:
            found["mime_type"] = self.mime_type
        return found


def parse_scan_request(body: bytes) -> ScanRequest:
    """The spec's ``ScanRequest``: 400 for what is not that JSON, 422 for a bad field."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise ScanRequestError(400, "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise ScanRequestError(400, "the body is not a JSON object")
    registry, artifact = doc.get("registry"), doc.get("artifact")
    if not isinstance(registry, dict) or not isinstance(artifact, dict):
        raise ScanRequestError(400, "'registry' and 'artifact' must be objects")
    fields: dict[str, str] = {}
    for name, holder, key, required in (
        ("registry.url", registry, "url", True),
        ("registry.authorization", registry, "authorization", False),
        ("artifact.repository", artifact, "repository", True),
        ("artifact.digest", artifact, "digest", True),
        ("artifact.tag", artifact, "tag", False),
        ("artifact.mime_type", artifact, "mime_type", False),
    ):
        value = holder.get(key)
        if value is None and not required:
            value = ""
        if not isinstance(value, str):
            raise ScanRequestError(400, f"'{name}' must be a string")
        fields[name] = value
    url, auth = fields["registry.url"], fields["registry.authorization"]
    repo, digest = fields["artifact.repository"], fields["artifact.digest"]
    tag, mime = fields["artifact.tag"], fields["artifact.mime_type"]
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ScanRequestError(422, "'registry.url' must be an http(s) URL")
    if not valid_repository(repo):
        raise ScanRequestError(422, "'artifact.repository' is not a repository name")
    if not valid_digest(digest):
        raise ScanRequestError(422, "'artifact.digest' is not a sha256 or sha512 digest")
    if mime and mime not in CONSUMES:
        raise ScanRequestError(422, f"'artifact.mime_type' {mime[:100]!r} is not scanned")
    if len(auth) > 16384:
        raise ScanRequestError(422, "'registry.authorization' is too long")
    return ScanRequest(url, auth, repo, digest, tag, mime)


CONSUMES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


_OS_FIELDS = tuple(f.name for f in dataclasses.fields(OSRelease))
_PACKAGE_FIELDS = tuple(f.name for f in dataclasses.fields(Package))


def _inventory_json(inventory: Inventory, artifact: dict[str, str]) -> str:
    # Field by field, not ``dataclasses.asdict``: its deep copy of every value was a few
    # ms per image of a scan all (the fields are flat strings and numbers).
    found = inventory.os
    return json.dumps(
        {
            "artifact": artifact,
            "os": {name: getattr(found, name) for name in _OS_FIELDS} if found else None,
            "packages": [
                {name: getattr(p, name) for name in _PACKAGE_FIELDS} for p in inventory.packages
            ],
        }
    )


def inventory_from_json(text: str) -> tuple[Inventory, dict[str, str]]:
    doc = json.loads(text)
    inv = Inventory(
        os=OSRelease(**doc["os"]) if doc["os"] else None,
        packages=[Package(**p) for p in doc["packages"]],
    )
    return inv, doc["artifact"]


def sbom_document(text: str, media_type: str) -> dict[str, Any]:
    """The SBOM of a stored inventory in the format asked for."""
    inventory, artifact = inventory_from_json(text)
    subject, version = artifact.get("repository", ""), artifact.get("digest", "")
    if media_type == "application/spdx+json":
        return spdx_json(
            inventory, subject=subject, subject_version=version, tool_version=dockyard_version
        )
    return cyclonedx_json(
        inventory, subject=subject, subject_version=version, tool_version=dockyard_version
    )


class AdapterScans:
    """The adapter's scans in this process (one per app, closed with it)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.egress = EgressPolicy.from_settings(settings)
        self.limits = Limits(max_scan_bytes=settings.scanner_adapter_max_scan_bytes)
        self._tasks: set[asyncio.Task[None]] = set()
        # Scans at once in this process; more wait as Pending (each pulls and inflates).
        self._running = asyncio.Semaphore(MAX_CONCURRENT_SCANS)
        self._ended: dict[str, asyncio.Event] = {}  # scans of this process not ended yet
        self.cache = VulnCache()
        self._updated_at: tuple[int, datetime | None] = (-1, None)  # (generation, newest)

    async def submit(self, request: ScanRequest) -> str:
        scan_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        async with self.db.write() as session:
            # Expired requests go as new ones come: no schedule of their own.
            await session.execute(delete(AdapterScan).where(AdapterScan.expires_at < now))
            session.add(
                AdapterScan(
                    id=scan_id,
                    status=PENDING,
                    repository=request.repository,
                    digest=request.digest,
                    creation_time=now,
                    update_time=now,
                    expires_at=now + timedelta(hours=self.settings.scanner_adapter_report_hours),
                )
            )
        self._ended[scan_id] = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._run(scan_id, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return scan_id

    async def find(self, scan_id: str) -> AdapterScan | None:
        async with self.db.read() as session:
            found = await session.get(AdapterScan, scan_id)
        if found is None or found.expires_at < datetime.now(UTC):
            return None
        # A running scan ends by its deadline; a pending one waits for at most a few others.
        limit = self.settings.scanner_adapter_timeout_seconds
        stale = {
            RUNNING: found.update_time + timedelta(seconds=limit + 60),
            PENDING: found.creation_time + timedelta(seconds=limit * 4 + 60),
        }
        if found.status in stale and stale[found.status] < datetime.now(UTC):
            # Its process stopped before it finished (a restart): it never will.
            await self._finish(scan_id, ERROR, message="the scan was interrupted; send it again")
            found.status, found.message = ERROR, "the scan was interrupted; send it again"
        return found

    async def database_updated_at(self) -> datetime | None:
        """The newest OSV record's ``modified`` (the metadata's "updated at"), read again only
        when an import changed the database's generation: every scan asks the metadata first,
        and counting the records each time was a full read of the vulnerability tables."""
        async with self.db.read() as session:
            generation = await vulndb.generation(session)
            if generation != self._updated_at[0]:
                self._updated_at = (generation, await vulndb.newest_modified(session))
        return self._updated_at[1]

    async def wait(self, scan_id: str, seconds: float = REPORT_WAIT_SECONDS) -> None:
        """Return when the scan ``scan_id`` ends, or after ``seconds``. A scan this process
        runs wakes the caller as it ends; another process's (several ASGI workers, several
        nodes) is looked up every ``_WAIT_POLL_SECONDS`` (one primary-key read)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                ended = self._ended.get(scan_id)
                if ended is not None:
                    await ended.wait()
                    return
                while True:
                    await asyncio.sleep(_WAIT_POLL_SECONDS)
                    async with self.db.read() as session:
                        status = await session.scalar(
                            select(AdapterScan.status).where(AdapterScan.id == scan_id)
                        )
                    if status not in (PENDING, RUNNING):
                        return

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _finish(self, scan_id: str, status: str, **values: str) -> None:
        async with self.db.write() as session:
            await session.execute(
                update(AdapterScan)
                .where(AdapterScan.id == scan_id)
                .values(status=status, update_time=datetime.now(UTC), **values)
            )

    async def _run(self, scan_id: str, request: ScanRequest) -> None:
        try:
            await self._run_once(scan_id, request)
        finally:
            ended = self._ended.pop(scan_id, None)
            if ended is not None:
                ended.set()

    async def _run_once(self, scan_id: str, request: ScanRequest) -> None:
        try:
            async with self._running:
                await self._finish(scan_id, RUNNING)
                report, inventory = await self.scan(request)
        except ScanFailed as exc:
            await self._finish(scan_id, ERROR, message=str(exc))
            return
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._finish(
                    scan_id, ERROR, message="the scan was stopped: the server shut down"
                )
            raise
        except Exception:
            log.exception("adapter scan %s failed", scan_id)
            await self._finish(scan_id, ERROR, message="internal error while scanning")
            return
        await self._finish(scan_id, SUCCESS, report=report, inventory=inventory)

    async def scan(self, request: ScanRequest) -> tuple[str, str]:
        """(the report JSON, the inventory JSON) of the request's image, or ``ScanFailed``."""
        budget = Budget(self.settings.scanner_adapter_max_pull_bytes)
        timeout = self.settings.scanner_adapter_timeout_seconds
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(min(timeout, 60.0)),
            trust_env=False,
            follow_redirects=False,
            # Every connection is checked against the egress policy at connect time, with
            # the addresses it connects to (a name that resolved to an allowed address for
            # the puller's own check cannot connect elsewhere on a second lookup). The CA
            # bundle is loaded once per process: per scan it was a quarter of the server's
            # CPU in a scan all (bench/scan_all_bench.py --scanner builtin).
            transport=CheckedTransport(
                verifying_context(), self.egress, None, httpx.Limits(max_connections=4)
            ),
        ) as client:
            puller = RegistryPuller(
                client,
                self.egress,
                request.registry_url,
                request.repository,
                request.authorization,
                budget,
            )
            layers: list[AsyncIterator[bytes]] = []
            try:
                async with asyncio.timeout(timeout):
                    _, manifest = await puller.manifest(request.digest)
                    layers = [puller.blob(d) for d in layer_digests(manifest)]
                    inventory = await ainventory_layers(layers, self.limits)
            except TimeoutError:
                budget.stopped = True  # the worker thread stops at its next read
                raise ScanFailed(f"the scan took longer than {timeout:g} seconds") from None
            except PullError as exc:
                raise ScanFailed(str(exc)) from None
            finally:
                for layer in layers:
                    with contextlib.suppress(Exception):
                        await layer.aclose()  # type: ignore[attr-defined]
        broken = [w for w in inventory.warnings if w.startswith("layer ")]
        if broken:
            raise ScanFailed("; ".join(broken[:5]))
        findings = await find_vulnerabilities(self.db, inventory, self.cache)

        def render() -> tuple[str, str]:
            report = vulnerability_report(
                findings, artifact=request.artifact, scanner_version=dockyard_version
            )
            return json.dumps(report), _inventory_json(inventory, request.artifact)

        return await asyncio.to_thread(render)  # a report of thousands of findings is CPU work


class ScanFailed(Exception):
    """A scan that ended in error; the message is the scan's status message."""


def metadata(updated_at: datetime | None) -> dict[str, Any]:
    """The adapter's ``ScannerAdapterMetadata``."""
    properties = {
        "harbor.scanner-adapter/scanner-type": "os-package-vulnerability",
        "harbor.scanner-adapter/vulnerability-database-source": "OSV",
    }
    if updated_at is not None:
        properties["harbor.scanner-adapter/vulnerability-database-updated-at"] = (
            updated_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
    return {
        "scanner": {"name": SCANNER_NAME, "vendor": SCANNER_VENDOR, "version": dockyard_version},
        "capabilities": [
            {
                "type": "vulnerability",
                "consumes_mime_types": list(CONSUMES),
                "produces_mime_types": [
                    "application/vnd.security.vulnerability.report; version=1.1",
                    "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0",
                ],
            },
            {
                "type": "sbom",
                "consumes_mime_types": list(CONSUMES),
                "produces_mime_types": ["application/vnd.security.sbom.report+json; version=1.0"],
                "additional_attributes": {
                    "sbom_media_types": ["application/spdx+json", "application/vnd.cyclonedx+json"]
                },
            },
        ],
        "properties": properties,
    }

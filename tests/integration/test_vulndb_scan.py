"""The OSV database (import, upsert, malformed records, status, the CLI) and the built-in
scanner's matching of real inventories against it, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from sqlalchemy import func, select
from tests.support import scanner_images as images
from tests.support.hostile_http import hostile_server

from dockyard.cli import main
from dockyard.errors import ConfigurationError
from dockyard.http.state import AppState
from dockyard.jobs import schedules
from dockyard.scanner import jobs as scanner_jobs
from dockyard.scanner import vulndb
from dockyard.scanner.adapter import AdapterScans, ScanFailed, ScanRequest
from dockyard.scanner.inventory import inventory_layers
from dockyard.scanner.models import VulnAffected, VulnRecord
from dockyard.scanner.report import summary, vulnerability_report
from dockyard.scanner.service import VulnCache, find_vulnerabilities
from dockyard.settings import Settings

PREFIX = "ITEST"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OSV sources on disk: a JSON list, an all.zip, one record per file, and bad ones."""
    root = tmp_path_factory.mktemp("osv")
    records = images.osv_records(PREFIX)
    (root / "list.json").write_text(json.dumps(records[:6]))
    with zipfile.ZipFile(root / "all.zip", "w") as archive:
        for record in records[6:]:
            archive.writestr(f"{record['id']}.json", json.dumps(record))
        archive.writestr("broken.json", "{not json")
        archive.writestr("README.txt", "not a record")
    (root / "bad.json").write_text(
        json.dumps(
            [
                {"id": "BAD-1", "modified": "never"},
                {"id": "BAD-2", "modified": images.MODIFIED, "affected": [{"package": {}}]},
                "a string",
                {**records[0], "id": "OTHER-GOOD-BESIDE-BAD"},
            ]
        )
    )
    return root


@pytest.fixture(scope="module")
async def imported(state: AppState, files: Path) -> vulndb.ImportResult:
    first = await vulndb.import_records(state.db, vulndb.iter_source(str(files / "list.json")))
    second = await vulndb.import_records(state.db, vulndb.iter_source(str(files / "all.zip")))
    assert (first.read, first.inserted, first.skipped) == (6, 6, 0)
    assert second.skipped == 1 and second.reasons[0].startswith(
        f"{files / 'all.zip'}!broken.json: not JSON"
    )
    assert second.inserted == second.read - 1
    return second


async def test_import_again_writes_nothing_and_newer_replaces(
    state: AppState, files: Path, imported: vulndb.ImportResult
) -> None:
    again = await vulndb.import_records(state.db, vulndb.iter_source(str(files / "list.json")))
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 6)
    record = images.osv_records(PREFIX)[3]  # the dpkg record
    newer = {**record, "modified": "2025-06-01T00:00:00Z", "summary": "revised"}
    older = {**record, "modified": "2024-01-01T00:00:00Z", "summary": "stale"}
    result = await vulndb.import_records(state.db, [("t", newer), ("t", older)])
    assert (result.updated, result.unchanged) == (1, 1)
    async with state.db.read() as session:
        row = await session.get(VulnRecord, record["id"])
        assert row is not None and row.summary == "revised"
        count = await session.scalar(
            select(func.count()).where(VulnAffected.vuln_id == record["id"])
        )
        assert count == 1  # the old affected rows went with the old record
    # put the original back for the scans below
    await vulndb.import_records(state.db, [("t", {**record, "modified": "2025-07-01T00:00:00Z"})])


async def test_malformed_records_are_skipped_with_their_reason(
    state: AppState, files: Path, imported: vulndb.ImportResult
) -> None:
    result = await vulndb.import_records(state.db, vulndb.iter_source(str(files / "bad.json")))
    assert (result.read, result.inserted, result.skipped) == (4, 1, 3)
    where = str(files / "bad.json")
    assert result.reasons == [
        f"{where}[0] (BAD-1): 'modified' is not an RFC 3339 time: 'never'",
        f"{where}[1] (BAD-2): 'affected.package' has no ecosystem or name",
        f"{where}[2]: not a JSON object",
    ]
    async with state.db.read() as session:
        assert await session.get(VulnRecord, "BAD-1") is None


def test_sources_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(vulndb.SourceError, match="only http and https"):
        list(vulndb.iter_source("file:///etc/passwd"))
    with pytest.raises(vulndb.SourceError, match="no such file"):
        list(vulndb.iter_source(str(tmp_path / "missing.json")))
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"PK\x03\x04" + b"\0" * 40)
    items = list(vulndb.iter_source(str(fake)))  # not a zip after all: read as JSON, and skipped
    assert len(items) == 1 and "not JSON" in items[0][1].why  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def http_root(files: Path) -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(files)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


async def test_import_from_a_url(
    state: AppState, http_root: str, imported: vulndb.ImportResult
) -> None:
    result = await vulndb.import_records(state.db, vulndb.iter_source(f"{http_root}/all.zip"))
    assert result.read == imported.read and result.skipped == 1
    with pytest.raises(vulndb.SourceError, match="answered 404"):
        list(vulndb.iter_source(f"{http_root}/missing.zip"))


def test_cli_import_and_status(
    settings: Settings, files: Path, imported: vulndb.ImportResult
) -> None:
    runner = CliRunner()
    where = ["--data-dir", str(settings.data_dir), "--database-url", settings.database_url]
    out = runner.invoke(main, ["vulndb", "import", str(files / "bad.json"), *where])
    assert out.exit_code == 0, out.output
    assert "4 records read, 0 new, 0 updated, 1 unchanged, 3 skipped" in out.output
    assert "skipped " + str(files / "bad.json") + "[2]: not a JSON object" in out.output
    out = runner.invoke(main, ["vulndb", "status", *where])
    assert out.exit_code == 0, out.output
    assert "Debian:12" in out.output and "Alpine:v3.19" in out.output
    out = runner.invoke(main, ["vulndb", "import", "ftp://x/all.zip", *where])
    assert out.exit_code == 1 and "only http and https URLs" in out.output


async def test_debian_image_findings(state: AppState, imported: vulndb.ImportResult) -> None:
    inventory = inventory_layers([io.BytesIO(b) for b in images.debian_layers()])
    assert len(inventory.packages) > 100
    report = vulnerability_report(await find_vulnerabilities(state.db, inventory))
    assert images.findings_of(report, PREFIX) == images.expected_debian(PREFIX)
    libc = next(v for v in report["vulnerabilities"] if v["id"] == f"{PREFIX}-GLIBC-1")
    assert libc["preferred_cvss"] == {"score_v3": 9.8, "vector_v3": images.CRITICAL_V3}
    assert libc["cwe_ids"] == ["CWE-787"]
    assert libc["links"] == [f"https://osv.invalid/{PREFIX}-GLIBC-1"]
    assert libc["vendor_attributes"]["source_package"] == "glibc"
    assert libc["vendor_attributes"]["ecosystem"] == "Debian:12"
    counts = summary(
        {"vulnerabilities": [v for v in report["vulnerabilities"] if v["id"].startswith(PREFIX)]}
    )
    expected = images.expected_debian(PREFIX)
    assert counts["total"] == len(expected)
    assert counts["fixable"] == sum(1 for e in expected if e[3])


async def test_alpine_image_findings(state: AppState, imported: vulndb.ImportResult) -> None:
    inventory = inventory_layers([io.BytesIO(b) for b in images.alpine_layers()])
    report = vulnerability_report(await find_vulnerabilities(state.db, inventory))
    assert images.findings_of(report, PREFIX) == images.expected_alpine(PREFIX)
    assert report["severity"] == "High"


@pytest.mark.skipif(not images.SKOPEO.exists(), reason="no Go binary built by Debian (skopeo) here")
async def test_go_stdlib_of_a_debian_go_binary(
    state: AppState, imported: vulndb.ImportResult
) -> None:
    inventory = inventory_layers([io.BytesIO(images.debian_layers()[0])])
    found = {(f.id, f.package) for f in await find_vulnerabilities(state.db, inventory)}
    assert (f"{PREFIX}-GO", "stdlib") in found


async def test_the_adapter_face_is_off_by_default(anon: httpx.AsyncClient) -> None:
    for path in ("/scanner/v1/metadata", "/scanner/v1/scan/x/report"):
        assert (await anon.get(path)).status_code == 404
    assert (await anon.post("/scanner/v1/scan", content=b"{}")).status_code in (404, 405)


def test_an_api_key_for_an_adapter_that_is_off_is_refused() -> None:
    with pytest.raises(ValidationError, match="scanner_adapter_enabled is false"):
        Settings(scanner_adapter_api_key="k")
    assert Settings(
        scanner_adapter_enabled=True, scanner_adapter_api_key="k"
    ).scanner_adapter_api_key


# --- the adapter's caps on what a registry can cost it ----------------------------------------


def _request(url: str) -> ScanRequest:
    return ScanRequest(url, "", "library/x", "sha256:" + "a" * 64)


@pytest.mark.parametrize(
    ("mode", "change", "reason"),
    [
        # a registry that drips its answer: the scan's deadline ends it
        ("drip-body", {"scanner_adapter_timeout_seconds": 1.0}, "took longer than 1 seconds"),
        # a registry that never stops sending: the manifest cap, then the pull cap
        ("endless", {}, "manifest is larger than"),
        (
            "endless",
            {"scanner_adapter_max_pull_bytes": 1 << 20},
            "larger than the bytes one scan may pull",
        ),
    ],
)
async def test_adapter_caps(
    state: AppState, mode: str, change: dict[str, object], reason: str
) -> None:
    settings = state.settings.model_copy(update=change)
    scans = AdapterScans(settings, state.db)
    with hostile_server(mode, interval=0.05) as server:
        started = time.monotonic()
        with pytest.raises(ScanFailed, match=reason):
            await scans.scan(_request(server.url))
        assert time.monotonic() - started < 30
        if mode == "endless":
            assert server.body_bytes_sent < 64 << 20  # it stopped reading


async def test_adapter_honours_the_egress_policy(state: AppState) -> None:
    settings = state.settings.model_copy(update={"egress_allow_loopback": False})
    with hostile_server("redirect", location="http://127.0.0.1:1/") as server:
        with pytest.raises(ScanFailed, match="refused by the egress policy"):
            await AdapterScans(settings, state.db).scan(_request(server.url))
        assert server.requests == []  # refused before connecting
    # a redirect to a refused address is refused too
    with (
        hostile_server("redirect", location="http://169.254.169.254/latest/") as server,
        pytest.raises(ScanFailed, match="refused by the egress policy"),
    ):
        await AdapterScans(state.settings, state.db).scan(_request(server.url))


async def test_a_registry_name_is_checked_with_the_addresses_it_connects_to(
    state: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DNS rebinding: a name is looked up once, when the connection is made, and the
    # addresses that lookup gives are the ones checked and dialled (no earlier lookup a
    # name could answer differently).
    settings = state.settings.model_copy(update={"egress_allow_loopback": False})
    with hostile_server("redirect", location="http://127.0.0.1:1/") as server:
        port = int(server.url.rsplit(":", 1)[1].rstrip("/"))
        looked_up: list[str] = []

        async def connect_time(host: str, port_: int) -> list[ipaddress.IPv4Address]:
            looked_up.append(host)
            return [ipaddress.IPv4Address("127.0.0.1")]

        monkeypatch.setattr("dockyard.http.outbound.resolve_host", connect_time)
        with pytest.raises(ScanFailed, match="refused by the egress policy"):
            await AdapterScans(settings, state.db).scan(
                _request(f"http://registry.rebind.test:{port}")
            )
        assert looked_up == ["registry.rebind.test"]
        assert server.requests == []


async def test_a_cache_drops_what_an_import_changed(
    state: AppState, imported: vulndb.ImportResult
) -> None:
    cache = VulnCache()
    inventory = inventory_layers([io.BytesIO(b) for b in images.alpine_layers()])
    first = {f.id for f in await find_vulnerabilities(state.db, inventory, cache)}
    assert f"{PREFIX}-MUSL" in first and f"{PREFIX}-CACHED" not in first
    record = {
        "id": f"{PREFIX}-CACHED",
        "modified": images.MODIFIED,
        "affected": [
            {
                "package": {"ecosystem": "Alpine:v3.19", "name": "busybox"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
            }
        ],
    }
    await vulndb.import_records(state.db, [("t", record)])
    second = {f.id for f in await find_vulnerabilities(state.db, inventory, cache)}
    assert second == first | {f"{PREFIX}-CACHED"}
    # withdrawn since: gone from the next scan, cache or not
    withdrawn = {**record, "modified": "2025-02-01T00:00:00Z", "withdrawn": "2025-02-01T00:00:00Z"}
    await vulndb.import_records(state.db, [("t", withdrawn)])
    assert {f.id for f in await find_vulnerabilities(state.db, inventory, cache)} == first


# --- the scheduled refresh ---------------------------------------------------------------------


def test_refresh_settings_go_together() -> None:
    with pytest.raises(ValidationError, match="go together"):
        Settings(vulndb_refresh_cron="0 0 3 * * *")
    with pytest.raises(ValidationError, match="go together"):
        Settings(vulndb_refresh_urls=["https://x/all.zip"])
    with pytest.raises(ValidationError, match="not an http"):
        Settings(vulndb_refresh_cron="0 0 3 * * *", vulndb_refresh_urls=["file:///x.zip"])


async def test_scheduled_refresh_imports_the_urls(
    state: AppState, http_root: str, files: Path
) -> None:
    # a record only this source has, served over loopback
    record = {**images.osv_records(PREFIX)[0], "id": f"{PREFIX}-SCHEDULED"}
    served = files / "scheduled.json"
    served.write_text(json.dumps([record, {"id": "broken"}]))
    bad = state.settings.model_copy(update={"vulndb_refresh_cron": "every minute"})
    with pytest.raises(ConfigurationError, match="vulndb_refresh_cron: invalid cron"):
        await scanner_jobs.sync_schedule(state.db, bad)
    on = state.settings.model_copy(
        update={
            "vulndb_refresh_cron": "* * * * * *",
            "vulndb_refresh_urls": [f"{http_root}/scheduled.json"],
        }
    )
    await scanner_jobs.sync_schedule(state.db, on)
    try:
        deadline = time.monotonic() + 60
        while True:
            async with state.db.read() as session:
                if await session.get(VulnRecord, f"{PREFIX}-SCHEDULED") is not None:
                    break
            assert time.monotonic() < deadline, "the scheduled refresh did not import"
            await asyncio.sleep(0.2)  # the schedule fires each second; nothing to await
    finally:
        await scanner_jobs.sync_schedule(state.db, state.settings)  # no cron: removed
    async with state.db.read() as session:
        assert await schedules.find_schedule(session, scanner_jobs.VENDOR_TYPE) is None


async def test_scans_over_the_slots_wait_as_pending_and_run_in_turn(
    state: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans = AdapterScans(state.settings, state.db)
    release = asyncio.Event()
    statuses_seen: list[str] = []

    async def slow_scan(request: ScanRequest) -> tuple[str, str]:
        await release.wait()
        return "{}", "{}"

    monkeypatch.setattr(scans, "scan", slow_scan)
    try:
        ids = [await scans.submit(_request("http://127.0.0.1:1")) for _ in range(3)]
        await asyncio.sleep(0.05)
        for scan_id in ids:
            found = await scans.find(scan_id)
            assert found is not None
            statuses_seen.append(found.status)
        # Two slots: the first two are stored Running at once, the third waits.
        assert statuses_seen == ["Running", "Running", "Pending"]
        release.set()
        for scan_id in ids:
            await scans.wait(scan_id, 5)
        ended = [await scans.find(scan_id) for scan_id in ids]
        assert [e.status if e else None for e in ended] == ["Success"] * 3
        assert not scans._running.locked()  # every slot given back
    finally:
        await scans.close()

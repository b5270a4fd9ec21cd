"""The OSV vulnerability database: importing records, its status, and the candidate lookup.

``import_records`` upserts by id: a record whose ``modified`` is not newer than the stored
one is left alone, so importing the same file twice writes nothing. A record that cannot be
read is skipped and counted with its reason; it never stops the import.

Sources (``iter_source``) are OSV JSON files (a record, or a list of records) and zip files
of them (the per-ecosystem ``all.zip`` that OSV publishes), from a path or an http(s) URL.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.engine import Database, insert_ignore

from .matching import package_key
from .models import VulnAffected, VulnDbGeneration, VulnRecord
from .osv import OsvError, OsvRecord, parse_record

BATCH = 500
MAX_RECORD_BYTES = 8 << 20  # one JSON record (a zip member); real ones are a few KiB
MAX_DOWNLOAD_BYTES = 2 << 30
DOWNLOAD_TIMEOUT = 60.0
MAX_REASONS = 20


class SourceError(Exception):
    """A source (file or URL) that cannot be read at all; the message says why."""


@dataclass
class ImportResult:
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)
    """The first reasons for skipped records, ``name: reason``."""

    def skip(self, where: str, why: str) -> None:
        self.skipped += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(f"{where}: {why}")


# --- reading sources ------------------------------------------------------------------------

Item = tuple[str, object]
"""(where a record came from, the parsed JSON or the reason it could not be parsed)."""


class _Unreadable:
    def __init__(self, why: str) -> None:
        self.why = why


def _documents(where: str, data: bytes) -> Iterator[Item]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        yield where, _Unreadable(f"not JSON ({str(exc)[:80]})")
        return
    if isinstance(doc, list):
        for index, item in enumerate(doc):
            yield f"{where}[{index}]", item
    else:
        yield where, doc


def _zip_documents(where: str, handle: IO[bytes]) -> Iterator[Item]:
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SourceError(f"{where}: not a readable zip file ({exc})") from None
    with archive:
        for info in archive.infolist():
            if info.is_dir() or not info.filename.endswith(".json"):
                continue
            name = f"{where}!{info.filename}"
            if info.file_size > MAX_RECORD_BYTES:
                yield name, _Unreadable(f"{info.file_size} bytes, over {MAX_RECORD_BYTES}")
                continue
            try:
                with archive.open(info) as member:
                    data = member.read(MAX_RECORD_BYTES + 1)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                yield name, _Unreadable(f"cannot be read from the zip ({exc})")
                continue
            if len(data) > MAX_RECORD_BYTES:  # the header lied about the size
                yield name, _Unreadable(f"over {MAX_RECORD_BYTES} bytes")
                continue
            yield from _documents(name, data)


def _download(url: str, into: IO[bytes], timeout: float) -> None:
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as answer:
            if answer.status_code != 200:
                raise SourceError(f"{url}: the server answered {answer.status_code}")
            size = 0
            for chunk in answer.iter_bytes(1 << 20):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise SourceError(f"{url}: larger than {MAX_DOWNLOAD_BYTES} bytes")
                into.write(chunk)
    except httpx.HTTPError as exc:
        raise SourceError(f"{url}: {exc}") from None


def iter_source(source: str, *, timeout: float = DOWNLOAD_TIMEOUT) -> Iterator[Item]:
    """The records of one source: a path or http(s) URL of a JSON or zip file."""
    if "://" in source:
        scheme = source.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise SourceError(f"{source}: only http and https URLs are fetched")
        with tempfile.TemporaryFile() as spool:
            _download(source, spool, timeout)
            spool.seek(0)
            if zipfile.is_zipfile(spool):
                spool.seek(0)
                yield from _zip_documents(source, spool)
                return
            spool.seek(0)
            data = spool.read(MAX_DOWNLOAD_BYTES)
            yield from _documents(source, data)
            return
    path = Path(source)
    if not path.is_file():
        raise SourceError(f"{source}: no such file")
    try:
        if zipfile.is_zipfile(path):
            with path.open("rb") as handle:
                yield from _zip_documents(source, handle)
            return
        with path.open("rb") as handle:
            data = handle.read(MAX_DOWNLOAD_BYTES)
    except OSError as exc:
        raise SourceError(f"{source}: {exc.strerror or exc}") from None
    yield from _documents(source, data)


# --- writing --------------------------------------------------------------------------------


def _row(record: OsvRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "modified": record.modified,
        "published": record.published,
        "aliases": json.dumps(list(record.aliases)),
        "summary": record.summary,
        "details": record.details,
        "severity": record.severity,
        "cvss_v3_vector": record.cvss_v3_vector,
        "cvss_v3_score": record.cvss_v3_score,
        "cvss_v2_vector": record.cvss_v2_vector,
        "cvss_v2_score": record.cvss_v2_score,
        "cwe_ids": json.dumps(list(record.cwe_ids)),
        "links": json.dumps(list(record.links)),
        "withdrawn": record.withdrawn,
        "import_time": datetime.now(UTC),
    }


def _affected_rows(record: OsvRecord) -> list[dict[str, Any]]:
    return [
        {
            "vuln_id": record.id,
            "ecosystem": aff.ecosystem,
            "package": package_key(aff.ecosystem, aff.package),
            "ranges": json.dumps(
                [{"type": r.type, "events": [{k: v} for k, v in r.events]} for r in aff.ranges]
            ),
            "versions": json.dumps(list(aff.versions)),
            "severity": aff.severity,
        }
        for aff in record.affected
    ]


async def write_batch(db: Database, batch: Sequence[OsvRecord], result: ImportResult) -> None:
    # The newest of each id within the batch, then against what is stored.
    newest: dict[str, OsvRecord] = {}
    for record in batch:
        seen = newest.get(record.id)
        if seen is None or record.modified > seen.modified:
            if seen is not None:
                result.unchanged += 1
            newest[record.id] = record
        else:
            result.unchanged += 1
    async with db.write() as session:
        rows = await session.execute(
            select(VulnRecord.id, VulnRecord.modified).where(VulnRecord.id.in_(list(newest)))
        )
        stored = {rid: modified for rid, modified in rows}  # noqa: C416 (a Result has keys(): dict() would take it for a mapping)
        replace = [
            rid for rid, rec in newest.items() if rid in stored and rec.modified > stored[rid]
        ]
        fresh = [rid for rid in newest if rid not in stored]
        result.unchanged += len(newest) - len(replace) - len(fresh)
        if replace:
            await session.execute(delete(VulnAffected).where(VulnAffected.vuln_id.in_(replace)))
            await session.execute(delete(VulnRecord).where(VulnRecord.id.in_(replace)))
        writing = [newest[rid] for rid in (*replace, *fresh)]
        if writing:
            await session.execute(insert(VulnRecord), [_row(r) for r in writing])
            affected = [row for r in writing for row in _affected_rows(r)]
            if affected:
                await session.execute(insert(VulnAffected), affected)
            await bump_generation(session)
        result.updated += len(replace)
        result.inserted += len(fresh)


async def bump_generation(session: AsyncSession) -> None:
    """Tell every process that caches records that they changed (``service.VulnCache``)."""
    now = datetime.now(UTC)
    await session.execute(
        insert_ignore(
            session, VulnDbGeneration, {"id": 1, "generation": 0, "update_time": now}, ["id"]
        )
    )
    await session.execute(
        update(VulnDbGeneration)
        .where(VulnDbGeneration.id == 1)
        .values(generation=VulnDbGeneration.generation + 1, update_time=now)
    )


async def generation(session: AsyncSession) -> int:
    found = await session.scalar(
        select(VulnDbGeneration.generation).where(VulnDbGeneration.id == 1)
    )
    return int(found or 0)


async def newest_modified(session: AsyncSession) -> datetime | None:
    """The newest record's ``modified`` (the adapter's "database updated at")."""
    return _utc(await session.scalar(select(func.max(VulnRecord.modified))))


async def import_records(
    db: Database,
    items: Iterable[Item],
    *,
    progress: Callable[[ImportResult], None] | None = None,
) -> ImportResult:
    """Upsert the records ``items`` give; ``progress`` is called after each batch."""
    result = ImportResult()
    batch: list[OsvRecord] = []
    for where, doc in items:
        result.read += 1
        parsed = parse_item(where, doc)
        if isinstance(parsed, Skipped):
            result.skip(parsed.where, parsed.why)
            continue
        batch.append(parsed)
        if len(batch) >= BATCH:
            await write_batch(db, batch, result)
            batch = []
            if progress is not None:
                progress(result)
    if batch:
        await write_batch(db, batch, result)
    if progress is not None:
        progress(result)
    return result


@dataclass(frozen=True)
class Skipped:
    where: str
    why: str


def parse_item(where: str, doc: object) -> OsvRecord | Skipped:
    """One source item as a record, or why it is skipped (CPU work: callers that must keep
    an event loop free run it in a thread)."""
    if isinstance(doc, _Unreadable):
        return Skipped(where, doc.why)
    try:
        return parse_record(doc)
    except OsvError as exc:
        name = doc.get("id") if isinstance(doc, dict) else None
        return Skipped(f"{where} ({name})" if isinstance(name, str) else where, str(exc))


# --- status ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    records: int
    affected: int
    ecosystems: list[tuple[str, int]]
    """(ecosystem, records affecting a package in it), most first."""
    newest_modified: datetime | None
    last_import: datetime | None


async def status(db: Database) -> Status:
    async with db.read() as session:
        records, newest, last = (
            await session.execute(
                select(
                    func.count(VulnRecord.id),
                    func.max(VulnRecord.modified),
                    func.max(VulnRecord.import_time),
                )
            )
        ).one()
        affected = (await session.execute(select(func.count(VulnAffected.id)))).scalar_one()
        per = Counter[str]()
        rows = await session.execute(
            select(
                VulnAffected.ecosystem, func.count(func.distinct(VulnAffected.vuln_id))
            ).group_by(VulnAffected.ecosystem)
        )
        for eco, count in rows:
            per[eco] = count
    return Status(
        records=records,
        affected=affected,
        ecosystems=per.most_common(),
        newest_modified=_utc(newest),
        last_import=_utc(last),
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)

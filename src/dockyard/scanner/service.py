"""Matching an inventory against the stored OSV records: the built-in scanner's findings."""

from __future__ import annotations

import asyncio
import functools
import json
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select

from dockyard.db.engine import Database

from . import vulndb
from .inventory import Inventory, Package
from .matching import Query, affects, query_for
from .models import VulnAffected, VulnRecord
from .osv import Range
from .report import Finding

_CHUNK = 500


@functools.lru_cache(maxsize=65536)
def _ranges(text: str) -> tuple[Range, ...]:
    """The stored ranges JSON, parsed (cached: the same rows are read for every artifact)."""
    found: list[Range] = []
    for item in json.loads(text):
        events = tuple((k, v) for event in item["events"] for k, v in event.items())
        found.append(Range(item["type"], events))
    return tuple(found)


@functools.lru_cache(maxsize=65536)
def _versions(text: str) -> frozenset[str]:
    return frozenset(json.loads(text))


@functools.lru_cache(maxsize=131072)
def _affects(ecosystem: str, ranges: str, versions: str, installed: str) -> tuple[bool, str]:
    """``affects`` of a stored row, cached: images share base layers, so the same installed
    versions meet the same rows again and again."""
    return affects(ecosystem, _ranges(ranges), _versions(versions), installed)


@functools.lru_cache(maxsize=8192)
def _strings(text: str) -> tuple[str, ...]:
    """A record's stored JSON list (links, CWE ids, aliases), parsed once per process:
    the same records are reported for image after image. Bounded well below a whole OSV
    database (a link list can be kilobytes): the records of the images being scanned."""
    return tuple(json.loads(text))


@dataclass(frozen=True, slots=True)
class _Hit:
    pkg: Package
    query: Query
    ecosystem: str
    fix: str
    own_severity: str


Row = tuple[str, str, str, str]
"""(vuln_id, ranges JSON, versions JSON, the ecosystem's severity) of one affected package."""


class VulnCache:
    """Candidate rows by (ecosystem, package) and records by id, kept in this process for as
    long as the database's generation (bumped by every import) stays the same. A scan of an
    image whose packages were seen before then reads one row: the generation."""

    def __init__(self, max_packages: int = 200_000, max_records: int = 100_000) -> None:
        self.generation = -1
        self.rows: LruDict[tuple[str, str], list[Row]] = LruDict(max_packages)
        self.records: LruDict[str, VulnRecord | None] = LruDict(max_records)

    def refresh(self, generation: int) -> None:
        if generation != self.generation:
            self.rows.clear()
            self.records.clear()
            self.generation = generation


K = TypeVar("K")
V = TypeVar("V")


class LruDict(OrderedDict[K, V]):
    """A dict that forgets its least recently used keys beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def find(self, key: K) -> V | None:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return None

    def put(self, key: K, value: V) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


async def find_vulnerabilities(
    db: Database, inventory: Inventory, cache: VulnCache | None = None
) -> list[Finding]:
    """Every (record, installed package) pair where the record's ranges cover the package's
    version; one finding per record and package name and version.

    Reads the affected-package rows of the inventory's packages (ranges only), then the
    records of those that match, so a record's text is read only when it is reported; with
    a ``cache``, only what it does not hold yet.
    """
    cache = cache if cache is not None else VulnCache()
    queries: list[tuple[Package, Query]] = []
    for pkg in inventory.packages:
        query = query_for(pkg, inventory.os)
        if query is not None:
            queries.append((pkg, query))
    wanted: dict[str, set[str]] = defaultdict(set)
    for _, query in queries:
        for eco in query.ecosystems:
            wanted[eco].add(query.name)
    candidates: dict[tuple[str, str], list[Row]] = {}
    async with db.read() as session:
        cache.refresh(await vulndb.generation(session))
        for eco, names in wanted.items():
            missing: list[str] = []
            for name in sorted(names):
                known = cache.rows.find((eco, name))
                if known is None:
                    missing.append(name)
                else:
                    candidates[(eco, name)] = known
            for name in missing:
                candidates[(eco, name)] = []
            for start in range(0, len(missing), _CHUNK):
                rows = await session.execute(
                    select(
                        VulnAffected.package,
                        VulnAffected.vuln_id,
                        VulnAffected.ranges,
                        VulnAffected.versions,
                        VulnAffected.severity,
                    ).where(
                        VulnAffected.ecosystem == eco,
                        VulnAffected.package.in_(missing[start : start + _CHUNK]),
                    )
                )
                for package, vuln_id, ranges, versions, severity in rows:
                    candidates[(eco, package)].append((vuln_id, ranges, versions, severity))
            for name in missing:
                cache.rows.put((eco, name), candidates[(eco, name)])
    # Comparing versions is CPU work: off the event loop (so other requests go on) and
    # with no connection held.
    hits = await asyncio.to_thread(_match, queries, candidates)
    ids = sorted({key[0] for key in hits})
    records: dict[str, VulnRecord | None] = {}
    missing_ids: list[str] = []
    for vid in ids:
        if vid in cache.records:
            records[vid] = cache.records.find(vid)
        else:
            missing_ids.append(vid)
    if missing_ids:
        async with db.read() as session:
            for start in range(0, len(missing_ids), _CHUNK):
                found = await session.execute(
                    select(VulnRecord).where(VulnRecord.id.in_(missing_ids[start : start + _CHUNK]))
                )
                for record in found.scalars():
                    records[record.id] = record
        for vid in missing_ids:
            cache.records.put(vid, records.get(vid))
    return [
        _finding(hit, stored)
        for key, hit in hits.items()
        if (stored := records.get(key[0])) is not None and not stored.withdrawn
    ]


def _match(
    queries: list[tuple[Package, Query]], candidates: dict[tuple[str, str], list[Row]]
) -> dict[tuple[str, str, str], _Hit]:
    hits: dict[tuple[str, str, str], _Hit] = {}
    for pkg, query in queries:
        for eco in query.ecosystems:
            for vuln_id, ranges, versions, severity in candidates.get((eco, query.name), ()):
                key = (vuln_id, pkg.name, pkg.version)
                if key in hits:
                    continue
                hit, fix = _affects(eco, ranges, versions, query.version)
                if hit:
                    hits[key] = _Hit(pkg, query, eco, fix, severity)
    return hits


def _finding(hit: _Hit, record: VulnRecord) -> Finding:
    pkg, query = hit.pkg, hit.query
    has_cvss = record.cvss_v3_score is not None or record.cvss_v2_score is not None
    severity = record.severity if has_cvss else (hit.own_severity or record.severity)
    attributes: dict[str, object] = {
        "ecosystem": hit.ecosystem,
        "package_type": pkg.type,
        "purl": pkg.purl,
        "path": "/" + pkg.path,
        "aliases": list(_strings(record.aliases)),
    }
    if query.name != pkg.name:
        attributes["source_package"] = query.name
    return Finding(
        id=record.id,
        package=pkg.name if pkg.type != "npm" or not pkg.namespace else query.name,
        version=pkg.version,
        fix_version=hit.fix,
        severity=severity,
        description=record.summary or record.details,
        links=_strings(record.links),
        cvss_v3_vector=record.cvss_v3_vector,
        cvss_v3_score=record.cvss_v3_score,
        cvss_v2_vector=record.cvss_v2_vector,
        cvss_v2_score=record.cvss_v2_score,
        cwe_ids=_strings(record.cwe_ids),
        vendor_attributes=attributes,
    )

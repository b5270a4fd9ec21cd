"""Matching an inventory against the stored OSV records: the built-in scanner's findings."""

from __future__ import annotations

import asyncio
import functools
import json
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select

from dockyard.db.engine import Database

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


@dataclass(frozen=True, slots=True)
class _Hit:
    pkg: Package
    query: Query
    ecosystem: str
    fix: str
    own_severity: str


async def find_vulnerabilities(db: Database, inventory: Inventory) -> list[Finding]:
    """Every (record, installed package) pair where the record's ranges cover the package's
    version; one finding per record and package name and version.

    Two reads: the affected-package rows of the inventory's packages (ranges only), then the
    records of those that match, so a record's text is read only when it is reported.
    """
    queries: list[tuple[Package, Query]] = []
    for pkg in inventory.packages:
        query = query_for(pkg, inventory.os)
        if query is not None:
            queries.append((pkg, query))
    wanted: dict[str, set[str]] = defaultdict(set)
    for _, query in queries:
        for eco in query.ecosystems:
            wanted[eco].add(query.name)
    candidates: dict[tuple[str, str], list[tuple[str, str, str, str]]] = defaultdict(list)
    async with db.read() as session:
        for eco, names in wanted.items():
            ordered = sorted(names)
            for start in range(0, len(ordered), _CHUNK):
                rows = await session.execute(
                    select(
                        VulnAffected.package,
                        VulnAffected.vuln_id,
                        VulnAffected.ranges,
                        VulnAffected.versions,
                        VulnAffected.severity,
                    ).where(
                        VulnAffected.ecosystem == eco,
                        VulnAffected.package.in_(ordered[start : start + _CHUNK]),
                    )
                )
                for package, vuln_id, ranges, versions, severity in rows:
                    candidates[(eco, package)].append((vuln_id, ranges, versions, severity))
    # Comparing versions is CPU work: off the event loop (so other requests go on) and
    # with no connection held.
    hits = await asyncio.to_thread(_match, queries, candidates)
    records: dict[str, VulnRecord] = {}
    ids = sorted({key[0] for key in hits})
    async with db.read() as session:
        for start in range(0, len(ids), _CHUNK):
            found = await session.execute(
                select(VulnRecord).where(
                    VulnRecord.id.in_(ids[start : start + _CHUNK]),
                    VulnRecord.withdrawn.is_(False),
                )
            )
            for record in found.scalars():
                records[record.id] = record
    return [_finding(hit, records[key[0]]) for key, hit in hits.items() if key[0] in records]


def _match(
    queries: list[tuple[Package, Query]],
    candidates: dict[tuple[str, str], list[tuple[str, str, str, str]]],
) -> dict[tuple[str, str, str], _Hit]:
    hits: dict[tuple[str, str, str], _Hit] = {}
    for pkg, query in queries:
        for eco in query.ecosystems:
            for vuln_id, ranges, versions, severity in candidates.get((eco, query.name), ()):
                key = (vuln_id, pkg.name, pkg.version)
                if key in hits:
                    continue
                hit, fix = affects(eco, _ranges(ranges), _versions(versions), query.version)
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
        "aliases": json.loads(record.aliases),
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
        links=tuple(json.loads(record.links)),
        cvss_v3_vector=record.cvss_v3_vector,
        cvss_v3_score=record.cvss_v3_score,
        cvss_v2_vector=record.cvss_v2_vector,
        cvss_v2_score=record.cvss_v2_score,
        cwe_ids=tuple(json.loads(record.cwe_ids)),
        vendor_attributes=attributes,
    )

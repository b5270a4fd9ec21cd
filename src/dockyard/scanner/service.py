"""Matching an inventory against the stored OSV records: the built-in scanner's findings."""

from __future__ import annotations

import json
from collections import defaultdict

from sqlalchemy import select

from dockyard.db.engine import Database

from .inventory import Inventory, Package
from .matching import Query, affects, query_for
from .models import VulnAffected, VulnRecord
from .osv import Range
from .report import Finding

_CHUNK = 500


def _ranges(text: str) -> tuple[Range, ...]:
    found: list[Range] = []
    for item in json.loads(text):
        events = tuple((k, v) for event in item["events"] for k, v in event.items())
        found.append(Range(item["type"], events))
    return tuple(found)


async def find_vulnerabilities(db: Database, inventory: Inventory) -> list[Finding]:
    """Every (record, installed package) pair where the record's ranges cover the package's
    version; one finding per record and package name and version."""
    queries: list[tuple[Package, Query]] = []
    for pkg in inventory.packages:
        query = query_for(pkg, inventory.os)
        if query is not None:
            queries.append((pkg, query))
    wanted: dict[str, set[str]] = defaultdict(set)
    for _, query in queries:
        for eco in query.ecosystems:
            wanted[eco].add(query.name)
    candidates: dict[tuple[str, str], list[tuple[VulnAffected, VulnRecord]]] = defaultdict(list)
    async with db.read() as session:
        for eco, names in wanted.items():
            ordered = sorted(names)
            for start in range(0, len(ordered), _CHUNK):
                rows = await session.execute(
                    select(VulnAffected, VulnRecord)
                    .join(VulnRecord, VulnRecord.id == VulnAffected.vuln_id)
                    .where(
                        VulnAffected.ecosystem == eco,
                        VulnAffected.package.in_(ordered[start : start + _CHUNK]),
                        VulnRecord.withdrawn.is_(False),
                    )
                )
                for affected, record in rows:
                    candidates[(eco, affected.package)].append((affected, record))
    findings: dict[tuple[str, str, str], Finding] = {}
    for pkg, query in queries:
        for eco in query.ecosystems:
            for affected, record in candidates.get((eco, query.name), ()):
                hit, fix = affects(
                    eco, _ranges(affected.ranges), json.loads(affected.versions), query.version
                )
                key = (record.id, pkg.name, pkg.version)
                if not hit or key in findings:
                    continue
                findings[key] = _finding(pkg, query, eco, fix, affected, record)
    return list(findings.values())


def _finding(
    pkg: Package, query: Query, eco: str, fix: str, affected: VulnAffected, record: VulnRecord
) -> Finding:
    has_cvss = record.cvss_v3_score is not None or record.cvss_v2_score is not None
    severity = record.severity if has_cvss else (affected.severity or record.severity)
    attributes: dict[str, object] = {
        "ecosystem": eco,
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
        fix_version=fix,
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

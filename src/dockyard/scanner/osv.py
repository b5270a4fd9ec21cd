"""OSV records (https://ossf.github.io/osv-schema/) read into what the matcher and report need.

Pure: a record is a parsed JSON object in, an :class:`OsvRecord` out, or :class:`OsvError`
naming what is wrong. Severity comes from the record's CVSS vectors (the base score computed
with the ``cvss`` library, v3 bands) or else from the ecosystem's own word for it
(``database_specific.severity`` as GitHub and others write it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cvss import CVSS2, CVSS3, CVSS4  # type: ignore[import-untyped]
from cvss.exceptions import CVSSError  # type: ignore[import-untyped]

# Harbor's severity scale (scanner adapter spec, ``Severity``), lowest first.
SEVERITIES = ("Unknown", "Negligible", "Low", "Medium", "High", "Critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

_ECOSYSTEM_WORDS = {
    "critical": "Critical",
    "high": "High",
    "important": "High",
    "moderate": "Medium",
    "medium": "Medium",
    "low": "Low",
    "negligible": "Negligible",
    "unimportant": "Negligible",
    "none": "Negligible",
}
_CWE = re.compile(r"CWE-\d{1,6}")
MAX_TEXT = 64 << 10  # a summary or details longer than this is cut


class OsvError(ValueError):
    """A record that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Range:
    type: str  # ECOSYSTEM or SEMVER (GIT ranges name commits and are not kept)
    events: tuple[tuple[str, str], ...]  # (introduced|fixed|last_affected|limit, version)


@dataclass(frozen=True, slots=True)
class Affected:
    ecosystem: str
    package: str
    ranges: tuple[Range, ...]
    versions: tuple[str, ...]
    severity: str = ""  # the ecosystem's own severity for this package, on Harbor's scale


@dataclass(frozen=True, slots=True)
class OsvRecord:
    id: str
    modified: datetime
    published: datetime | None = None
    aliases: tuple[str, ...] = ()
    summary: str = ""
    details: str = ""
    severity: str = "Unknown"
    cvss_v3_vector: str = ""
    cvss_v3_score: float | None = None
    cvss_v2_vector: str = ""
    cvss_v2_score: float | None = None
    cwe_ids: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    affected: tuple[Affected, ...] = field(default=())
    withdrawn: bool = False


def severity_from_score(score: float) -> str:
    """CVSS v3 qualitative bands: 0 None (Negligible here), <4 Low, <7 Medium, <9 High, else
    Critical."""
    if score >= 9.0:
        return "Critical"
    if score >= 7.0:
        return "High"
    if score >= 4.0:
        return "Medium"
    if score > 0.0:
        return "Low"
    return "Negligible"


def ecosystem_severity(word: object) -> str:
    """An ecosystem's severity word (``HIGH``, ``moderate``, ``important``...) on Harbor's scale,
    or "" when it says nothing known."""
    if not isinstance(word, str):
        return ""
    return _ECOSYSTEM_WORDS.get(word.strip().lower(), "")


def _time(value: object, what: str, *, required: bool) -> datetime | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise OsvError(f"'{what}' is not an RFC 3339 time")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise OsvError(f"'{what}' is not an RFC 3339 time: {value[:40]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _strings(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise OsvError(f"'{what}' is not a list of strings")
    return tuple(value)


def _text(value: object, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise OsvError(f"'{what}' is not a string")
    return value[:MAX_TEXT]


def _cvss(vector: str) -> tuple[str, float] | None:
    """(kind, base score) of a CVSS vector, kind ``v2``/``v3``/``v4``; None if unreadable."""
    try:
        if vector.startswith("CVSS:3."):
            return "v3", float(CVSS3(vector).base_score)
        if vector.startswith("CVSS:4."):
            return "v4", float(CVSS4(vector).base_score)
        return "v2", float(CVSS2(vector).base_score)
    except (CVSSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _ranges(value: object) -> tuple[Range, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise OsvError("'affected.ranges' is not a list")
    found: list[Range] = []
    for item in value:
        if not isinstance(item, dict):
            raise OsvError("an 'affected.ranges' item is not an object")
        kind = item.get("type")
        if kind not in ("ECOSYSTEM", "SEMVER", "GIT"):
            raise OsvError(f"range type {str(kind)[:20]!r} is not ECOSYSTEM, SEMVER or GIT")
        raw = item.get("events")
        if not isinstance(raw, list) or not raw:
            raise OsvError("a range has no 'events' list")
        events: list[tuple[str, str]] = []
        for event in raw:
            if not isinstance(event, dict) or len(event) != 1:
                raise OsvError("a range event is not an object of one key")
            ((key, version),) = event.items()
            if key not in ("introduced", "fixed", "last_affected", "limit"):
                raise OsvError(f"unknown range event {str(key)[:20]!r}")
            if not isinstance(version, str) or not version:
                raise OsvError(f"range event '{key}' has no version")
            events.append((key, version))
        if not any(key == "introduced" for key, _ in events):
            raise OsvError("a range has no 'introduced' event")
        if kind != "GIT":
            found.append(Range(kind, tuple(events)))
    return tuple(found)


def parse_record(doc: object) -> OsvRecord:
    """An OSV record (a JSON object) as an :class:`OsvRecord`, or :class:`OsvError`."""
    if not isinstance(doc, dict):
        raise OsvError("not a JSON object")
    vid = doc.get("id")
    if not isinstance(vid, str) or not vid or len(vid) > 128 or not vid.isprintable():
        raise OsvError("no 'id' (a string of at most 128 characters)")
    modified = _time(doc.get("modified"), "modified", required=True)
    assert modified is not None
    v3_vector = v2_vector = ""
    v3_score: float | None = None
    v2_score: float | None = None
    v4_score: float | None = None
    severity = ""
    severities = doc.get("severity")
    if severities is not None and not isinstance(severities, list):
        raise OsvError("'severity' is not a list")
    for item in severities or ():
        if not isinstance(item, dict) or not isinstance(item.get("score"), str):
            raise OsvError("a 'severity' item has no score string")
        scored = _cvss(item["score"])
        if scored is None:
            continue
        kind, score = scored
        if kind == "v3" and v3_score is None:
            v3_vector, v3_score = item["score"], score
        elif kind == "v2" and v2_score is None:
            v2_vector, v2_score = item["score"], score
        elif kind == "v4" and v4_score is None:
            v4_score = score
    # The v3 score decides (Harbor's preferred CVSS is v3), then v4, then v2.
    for scored_as in (v3_score, v4_score, v2_score):
        if scored_as is not None:
            severity = severity_from_score(scored_as)
            break
    db_specific = doc.get("database_specific")
    if not severity and isinstance(db_specific, dict):
        severity = ecosystem_severity(db_specific.get("severity"))
    affected_raw = doc.get("affected")
    if affected_raw is not None and not isinstance(affected_raw, list):
        raise OsvError("'affected' is not a list")
    affected: list[Affected] = []
    for item in affected_raw or ():
        if not isinstance(item, dict):
            raise OsvError("an 'affected' item is not an object")
        pkg = item.get("package")
        if pkg is None:
            continue  # affected by commit only (GIT ranges): nothing to match by version
        if not isinstance(pkg, dict):
            raise OsvError("'affected.package' is not an object")
        eco, name = pkg.get("ecosystem"), pkg.get("name")
        if not isinstance(eco, str) or not eco or not isinstance(name, str) or not name:
            raise OsvError("'affected.package' has no ecosystem or name")
        if len(eco) > 64 or len(name) > 255:
            raise OsvError("'affected.package' ecosystem or name is too long")
        own = ""
        for extra in (item.get("ecosystem_specific"), item.get("database_specific")):
            if isinstance(extra, dict) and not own:
                own = ecosystem_severity(extra.get("severity") or extra.get("urgency"))
        affected.append(
            Affected(
                ecosystem=eco,
                package=name,
                ranges=_ranges(item.get("ranges")),
                versions=_strings(item.get("versions"), "affected.versions"),
                severity=own,
            )
        )
    links: list[str] = []
    refs = doc.get("references")
    if refs is not None and not isinstance(refs, list):
        raise OsvError("'references' is not a list")
    for ref in refs or ():
        if isinstance(ref, dict) and isinstance(ref.get("url"), str):
            links.append(ref["url"][:2048])
    cwes: list[str] = []
    if isinstance(db_specific, dict):
        raw_cwes = db_specific.get("cwe_ids")
        if isinstance(raw_cwes, list):
            cwes = [c for c in raw_cwes if isinstance(c, str) and _CWE.fullmatch(c)]
    return OsvRecord(
        id=vid,
        modified=modified,
        published=_time(doc.get("published"), "published", required=False),
        aliases=_strings(doc.get("aliases"), "aliases"),
        summary=_text(doc.get("summary"), "summary"),
        details=_text(doc.get("details"), "details"),
        severity=severity or "Unknown",
        cvss_v3_vector=v3_vector,
        cvss_v3_score=v3_score,
        cvss_v2_vector=v2_vector,
        cvss_v2_score=v2_score,
        cwe_ids=tuple(dict.fromkeys(cwes)),
        links=tuple(dict.fromkeys(links)),
        affected=tuple(affected),
        withdrawn=doc.get("withdrawn") is not None,
    )

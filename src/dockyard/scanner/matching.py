"""Which OSV records affect an installed package: ecosystem names and version ranges.

Pure. Versions are compared with ``univers`` (the version classes of each ecosystem:
dpkg's epochs and ``~``, apk's ``-rN`` and suffixes, rpm's epoch:version-release, PEP 440,
node-semver, Go's semver, Maven's ComparableVersion). A version either side that its
ecosystem cannot read never matches a range (it matches a ``versions`` list only exactly).

Only ``<`` is used between versions: univers' Alpine class answers ``>=`` and ``<=`` wrongly
(``1.2.3-r9 >= 1.2.3-r10`` is true in univers 32), while its ``<`` is right in every class.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from univers.versions import (
    AlpineLinuxVersion,
    DebianVersion,
    GolangVersion,
    InvalidVersion,
    MavenVersion,
    PypiVersion,
    RpmVersion,
    SemverVersion,
    Version,
)

from .inventory import OSRelease, Package
from .osv import Range

# OSV ecosystem (the part before ':') → univers version class.
_VERSION_CLASSES: dict[str, type[Version]] = {
    "Debian": DebianVersion,
    "Ubuntu": DebianVersion,
    "Alpine": AlpineLinuxVersion,
    "Rocky Linux": RpmVersion,
    "AlmaLinux": RpmVersion,
    "Red Hat": RpmVersion,
    "openSUSE": RpmVersion,
    "SUSE": RpmVersion,
    "Mageia": RpmVersion,
    "PyPI": PypiVersion,
    "npm": SemverVersion,
    "Go": GolangVersion,
    "Maven": MavenVersion,
}

# os-release ID of an rpm distribution → its OSV ecosystem (followed by ':' and the major).
_RPM_ECOSYSTEMS = {"rocky": "Rocky Linux", "almalinux": "AlmaLinux", "mageia": "Mageia"}

_PYPI_SEP = re.compile(r"[-_.]+")

# apk's post-release suffixes, in apk's order; univers (Gentoo's rules) knows only ``_p``.
_APK_POST = {"cvs": 1, "svn": 2, "git": 3, "hg": 4, "p": 5}
_APK_POST_SUFFIX = re.compile(r"_(cvs|svn|git|hg|p)(\d*)")


def _apk_for_univers(text: str) -> str:
    """An apk version univers can read, in the same order: each post-release suffix becomes
    ``_p`` with a number that ranks it first by its kind (cvs < svn < git < hg < p), then by
    its own number (``1.2.4_git20230717`` is ``1.2.4_p3…020230717``)."""
    return _APK_POST_SUFFIX.sub(
        lambda m: f"_p{_APK_POST[m.group(1)]}{int(m.group(2) or 0):020d}", text
    )


def package_key(ecosystem: str, name: str) -> str:
    """The name a package is looked up by: PyPI's normalised form (PEP 503), else as written."""
    if ecosystem == "PyPI":
        return _PYPI_SEP.sub("-", name).lower()
    return name


@dataclass(frozen=True, slots=True)
class Query:
    """One package as OSV names it: the ecosystems to look in, its name, its version there."""

    ecosystems: tuple[str, ...]
    name: str
    version: str


def query_for(pkg: Package, os: OSRelease | None) -> Query | None:
    """How to look ``pkg`` up in OSV, or None for a package of an ecosystem not matched.

    Distribution packages are looked up by their *source* package and its version, as the
    Debian and Alpine advisories are written (a binNMU's ``+b1`` is not in them).
    """
    if pkg.type == "deb" and os is not None and os.version_id:
        if os.id == "debian":
            ecosystems: tuple[str, ...] = (f"Debian:{os.version_id.split('.')[0]}",)
        elif os.id == "ubuntu":
            ecosystems = (f"Ubuntu:{os.version_id}", f"Ubuntu:{os.version_id}:LTS")
        else:
            return None
        return Query(ecosystems, pkg.source_name or pkg.name, pkg.source_version or pkg.version)
    if pkg.type == "apk" and os is not None and os.id == "alpine" and os.version_id:
        major_minor = ".".join(os.version_id.split(".")[:2])
        return Query(
            (f"Alpine:v{major_minor}",),
            pkg.source_name or pkg.name,
            pkg.source_version or pkg.version,
        )
    if pkg.type == "rpm" and os is not None and os.id in _RPM_ECOSYSTEMS and os.version_id:
        version = f"{pkg.epoch}:{pkg.version}" if pkg.epoch else pkg.version
        major = os.version_id.split(".")[0]
        return Query((f"{_RPM_ECOSYSTEMS[os.id]}:{major}",), pkg.source_name or pkg.name, version)
    if pkg.type == "pypi":
        return Query(("PyPI",), package_key("PyPI", pkg.name), pkg.version)
    if pkg.type == "npm":
        name = f"{pkg.namespace}/{pkg.name}" if pkg.namespace else pkg.name
        return Query(("npm",), name, pkg.version)
    if pkg.type == "golang":
        if pkg.version in ("(devel)", ""):
            return None
        return Query(("Go",), pkg.name, pkg.version.removeprefix("go").removeprefix("v"))
    if pkg.type == "maven":
        return Query(("Maven",), f"{pkg.namespace}:{pkg.name}", pkg.version)
    return None


def version_class(ecosystem: str) -> type[Version] | None:
    return _VERSION_CLASSES.get(ecosystem.split(":", 1)[0])


@functools.lru_cache(maxsize=65536)
def parse_version(ecosystem_base: str, text: str) -> Version | None:
    """``text`` as a version of the ecosystem (cached: range bounds repeat across artifacts)."""
    cls = _VERSION_CLASSES.get(ecosystem_base)
    if cls is None:
        return None
    if cls in (SemverVersion, GolangVersion):
        text = text.removeprefix("v")
    elif cls is AlpineLinuxVersion:
        text = _apk_for_univers(text)
    try:
        return cls(text)
    except (InvalidVersion, ValueError, TypeError, IndexError):
        return None


def _bound(base: str, kind: str, text: str) -> Version | None:
    if kind == "SEMVER":
        return parse_version("npm", text)  # SEMVER ranges are semver 2.0 whatever the ecosystem
    return parse_version(base, text)


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A range with its bounds parsed and its events in version order (cached: the same
    ranges are matched for every artifact)."""

    events: tuple[tuple[Version | None, str, str], ...]
    limits: tuple[Version, ...]
    readable: bool


@functools.lru_cache(maxsize=131072)
def _compile(base: str, rng: Range) -> _Compiled:
    events: list[tuple[Version | None, str, str]] = []
    limits: list[Version] = []
    for key, text in rng.events:
        if key == "introduced" and text == "0":
            events.append((None, key, text))
            continue
        if key == "limit" and text == "*":
            continue
        bound = _bound(base, rng.type, text)
        if bound is None:
            return _Compiled((), (), readable=False)  # a range it cannot read is not guessed at
        if key == "limit":
            limits.append(bound)
        else:
            events.append((bound, key, text))
    # None (introduced "0") sorts first; at equal versions, the order of the record stands.
    events.sort(key=functools.cmp_to_key(_cmp_events))
    return _Compiled(tuple(events), tuple(limits), readable=True)


def _in_range(base: str, rng: Range, installed: str) -> tuple[bool, str]:
    """Whether ``installed`` is in the range, and the version that fixes it ("" if none).

    The OSV schema's evaluation: events in version order; an ``introduced`` at or below the
    version opens, a ``fixed`` at or below it (or a ``last_affected`` below it) closes; every
    ``limit`` bounds the range from above.
    """
    version = _bound(base, rng.type, installed)
    if version is None:
        return False, ""
    compiled = _compile(base, rng)
    if not compiled.readable:
        return False, ""
    if compiled.limits and not any(version < limit for limit in compiled.limits):
        return False, ""
    affected = False
    fix = ""
    for bound, key, text in compiled.events:
        if key == "introduced":
            if bound is None or not version < bound:
                affected = True
                fix = ""
        elif key == "fixed" and bound is not None:
            if not version < bound:
                affected = False
            elif affected and not fix:
                fix = text
        elif key == "last_affected" and bound is not None and bound < version:
            affected = False
    return affected, fix if affected else ""


def _cmp_events(a: tuple[Version | None, str, str], b: tuple[Version | None, str, str]) -> int:
    if a[0] is None or b[0] is None:
        return (a[0] is not None) - (b[0] is not None)
    return -1 if a[0] < b[0] else (1 if b[0] < a[0] else 0)


def affects(
    ecosystem: str, ranges: Sequence[Range], versions: Iterable[str], installed: str
) -> tuple[bool, str]:
    """Whether an OSV ``affected`` entry (its ranges and versions) covers ``installed``, and
    the lowest version that fixes it ("" if no fix is known)."""
    base = ecosystem.split(":", 1)[0]
    hit = installed in versions
    fixes: list[str] = []
    for rng in ranges:
        inside, fix = _in_range(base, rng, installed)
        if inside:
            hit = True
            if fix:
                fixes.append(fix)
    if not hit:
        return False, ""
    if not fixes:
        return True, ""
    parsed = [(parse_version(base, f), f) for f in fixes]
    readable = [(v, f) for v, f in parsed if v is not None]
    if not readable:
        return True, fixes[0]
    lowest = readable[0]
    for cand in readable[1:]:
        if cand[0] < lowest[0]:
            lowest = cand
    return True, lowest[1]

"""What the inventory finds: the OS, the packages, and their package URLs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from urllib.parse import quote


@dataclass(frozen=True, slots=True)
class OSRelease:
    """The fields of ``os-release`` that name a distribution (``ID``, ``VERSION_ID``...)."""

    id: str
    version_id: str = ""
    version_codename: str = ""
    pretty_name: str = ""
    path: str = ""

    @property
    def distro(self) -> str:
        """The purl ``distro`` qualifier: ``debian-12``, ``alpine-3.19.1``, or just the id."""
        return f"{self.id}-{self.version_id}" if self.version_id else self.id


@dataclass(frozen=True, slots=True)
class Package:
    """One installed package, as an SBOM component.

    ``type`` is the package-URL type (``deb``, ``apk``, ``rpm``, ``pypi``, ``npm``, ``golang``,
    ``maven``); ``version`` is the version as the ecosystem writes it (a dpkg version keeps its
    epoch, ``1:2.3-4``; an rpm version is ``VERSION-RELEASE`` with the epoch apart); ``path`` is
    the file it was read from (no leading slash). ``purl`` is filled in once the OS is known.
    """

    type: str
    name: str
    version: str
    path: str
    namespace: str = ""
    arch: str = ""
    epoch: int | None = None
    source_name: str = ""
    source_version: str = ""
    purl: str = ""


@dataclass(slots=True)
class Inventory:
    """An image's packages after its layers are applied, with what could not be read."""

    os: OSRelease | None = None
    packages: list[Package] = field(default_factory=list)
    # Files or layers skipped (too large, malformed, over a limit), one sentence each.
    warnings: list[str] = field(default_factory=list)
    layers: int = 0
    bytes_read: int = 0  # uncompressed tar bytes read over all layers


# --- package URLs (https://github.com/package-url/purl-spec) --------------------------------

# The spec keeps these unencoded in every component; ':' only where it is no separator.
_SAFE = "-._~"


def _enc(text: str, safe: str = _SAFE) -> str:
    return quote(text, safe=safe)


def purl(
    type_: str,
    name: str,
    version: str = "",
    namespace: str = "",
    qualifiers: dict[str, str] | None = None,
) -> str:
    """``pkg:type/namespace/name@version?qualifiers`` with each part percent-encoded."""
    out = f"pkg:{type_}/"
    if namespace:
        out += "/".join(_enc(seg) for seg in namespace.split("/") if seg) + "/"
    out += _enc(name)
    if version:
        out += "@" + _enc(version, _SAFE + ":")
    quals = sorted((k.lower(), v) for k, v in (qualifiers or {}).items() if v)
    if quals:
        out += "?" + "&".join(f"{k}={_enc(v, _SAFE + ':/')}" for k, v in quals)
    return out


def with_purl(pkg: Package, os: OSRelease | None) -> Package:
    """The package with its purl, using the OS for the distribution packages' namespace."""
    quals: dict[str, str] = {}
    namespace = pkg.namespace
    name = pkg.name
    if pkg.type in ("deb", "apk", "rpm"):
        namespace = os.id if os else namespace
        quals["arch"] = pkg.arch
        if os:
            quals["distro"] = os.distro
        if pkg.type == "rpm" and pkg.epoch:
            quals["epoch"] = str(pkg.epoch)
        version = pkg.version
    elif pkg.type == "pypi":
        # The spec's pypi names are lower case with '-' for '_'.
        name = name.lower().replace("_", "-")
        version = pkg.version
    elif pkg.type == "golang":
        # The module path: all but its last element are the namespace.
        namespace, _, name = name.rpartition("/")
        version = pkg.version
    else:
        version = pkg.version
    return dataclasses.replace(pkg, purl=purl(pkg.type, name, version, namespace, quals))

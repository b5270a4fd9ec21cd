"""An inventory as an SPDX 2.3 JSON SBOM, as a plain dict ready for ``json.dumps``.

The image is the described package (``SPDXRef-Image``); each installed package is a package
that the image ``CONTAINS``, with its purl as a ``PACKAGE-MANAGER`` external reference and
the file it was read from as a comment. Checked against the SPDX 2.3 JSON schema in
tests/unit/test_inventory_sbom.py.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from .model import Inventory

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def _spdx_id(text: str, taken: set[str]) -> str:
    base = "SPDXRef-" + (_ID_UNSAFE.sub("-", text).strip("-")[:120] or "package")
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    taken.add(candidate)
    return candidate


def spdx_json(
    inventory: Inventory,
    *,
    subject: str,
    subject_version: str = "",
    tool_version: str = "",
    namespace: str = "",
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """The SPDX 2.3 document of an image (``subject``, e.g. ``library/app``; its digest as the
    version). ``namespace`` is the document's unique URI (a fresh one when empty)."""
    taken = {"SPDXRef-DOCUMENT", "SPDXRef-Image"}
    image: dict[str, Any] = {
        "SPDXID": "SPDXRef-Image",
        "name": subject,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "primaryPackagePurpose": "CONTAINER",
    }
    if subject_version:
        image["versionInfo"] = subject_version
    packages: list[dict[str, Any]] = [image]
    relationships: list[dict[str, str]] = [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": "SPDXRef-Image",
        }
    ]
    if inventory.os is not None:
        os_id = _spdx_id(f"OperatingSystem-{inventory.os.distro}", taken)
        os_package: dict[str, Any] = {
            "SPDXID": os_id,
            "name": inventory.os.id,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "primaryPackagePurpose": "OPERATING_SYSTEM",
        }
        if inventory.os.version_id:
            os_package["versionInfo"] = inventory.os.version_id
        packages.append(os_package)
        relationships.append(
            {
                "spdxElementId": "SPDXRef-Image",
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": os_id,
            }
        )
    for pkg in inventory.packages:
        pkg_id = _spdx_id(f"{pkg.type}-{pkg.name}-{pkg.version}", taken)
        name = f"{pkg.namespace}/{pkg.name}" if pkg.type == "npm" and pkg.namespace else pkg.name
        entry: dict[str, Any] = {
            "SPDXID": pkg_id,
            "name": name,
            "versionInfo": pkg.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "primaryPackagePurpose": "LIBRARY",
            "comment": f"read from /{pkg.path}",
        }
        if pkg.purl:
            entry["externalRefs"] = [
                {
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": pkg.purl,
                }
            ]
        if pkg.source_name and pkg.source_name != pkg.name:
            entry["sourceInfo"] = f"built from {pkg.source_name} {pkg.source_version}".strip()
        packages.append(entry)
        relationships.append(
            {
                "spdxElementId": "SPDXRef-Image",
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": pkg_id,
            }
        )
    creators = [f"Tool: dockyard-{tool_version}" if tool_version else "Tool: dockyard"]
    when = (timestamp or datetime.now(UTC)).astimezone(UTC)
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{subject}@{subject_version}" if subject_version else subject,
        "documentNamespace": namespace or f"https://dockyard.invalid/spdx/{uuid.uuid4()}",
        "creationInfo": {"created": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "creators": creators},
        "documentDescribes": ["SPDXRef-Image"],
        "packages": packages,
        "relationships": relationships,
    }

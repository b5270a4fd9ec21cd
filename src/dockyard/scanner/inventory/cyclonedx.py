"""An inventory as a CycloneDX JSON SBOM (1.5 or 1.6), as a plain dict ready for ``json.dumps``.

One component per package (its purl, group for Maven groups and npm scopes, the file it was
read from and its source package as properties) and one ``operating-system`` component for the
OS. Checked against the CycloneDX schemas in tests/unit/test_inventory_sbom.py.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from .model import Inventory

SpecVersion = Literal["1.5", "1.6"]


def cyclonedx_json(
    inventory: Inventory,
    *,
    subject: str,
    subject_version: str = "",
    spec_version: SpecVersion = "1.6",
    tool_version: str = "",
    serial: uuid.UUID | None = None,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """The SBOM of an image (``subject``, e.g. ``library/app``; its digest as the version)."""
    components: list[dict[str, Any]] = []
    if inventory.os is not None:
        os_component: dict[str, Any] = {
            "type": "operating-system",
            "bom-ref": f"os:{inventory.os.distro}",
            "name": inventory.os.id,
        }
        if inventory.os.version_id:
            os_component["version"] = inventory.os.version_id
        if inventory.os.pretty_name:
            os_component["description"] = inventory.os.pretty_name
        components.append(os_component)
    refs: dict[str, int] = {}
    for pkg in inventory.packages:
        # The same package can sit at two paths (a jar copied twice): refs stay unique.
        seen = refs.get(pkg.purl, 0)
        refs[pkg.purl] = seen + 1
        component: dict[str, Any] = {
            "type": "library",
            "bom-ref": pkg.purl if not seen else f"{pkg.purl}#{seen}",
            "name": pkg.name,
            "version": pkg.version,
            "purl": pkg.purl,
        }
        if pkg.namespace and pkg.type in ("maven", "npm"):
            component["group"] = pkg.namespace
        props = [{"name": "dockyard:package:path", "value": "/" + pkg.path}]
        props.append({"name": "dockyard:package:type", "value": pkg.type})
        if pkg.source_name:
            props.append({"name": "dockyard:package:source_name", "value": pkg.source_name})
        if pkg.source_version:
            props.append({"name": "dockyard:package:source_version", "value": pkg.source_version})
        component["properties"] = props
        components.append(component)
    subject_component: dict[str, Any] = {
        "type": "container",
        "bom-ref": "subject",
        "name": subject,
    }
    if subject_version:
        subject_component["version"] = subject_version
    tool: dict[str, Any] = {"type": "application", "name": "dockyard"}
    if tool_version:
        tool["version"] = tool_version
    when = (timestamp or datetime.now(UTC)).astimezone(UTC)
    return {
        "$schema": f"http://cyclonedx.org/schema/bom-{spec_version}.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": spec_version,
        "serialNumber": (serial or uuid.uuid4()).urn,
        "version": 1,
        "metadata": {
            "timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [tool]},
            "component": subject_component,
        },
        "components": components,
        "dependencies": [
            {"ref": "subject", "dependsOn": [c["bom-ref"] for c in components]},
        ],
    }

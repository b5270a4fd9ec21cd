"""The inventory as a CycloneDX SBOM, validated against the CycloneDX JSON schemas.

The schemas are those bundled with cyclonedx-python-lib (its ``cyclonedx/schema/_res``
directory: ``bom-1.5.SNAPSHOT.schema.json``, ``bom-1.6.SNAPSHOT.schema.json`` and the SPDX
licence and JSF schemas they refer to), read offline.
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cyclonedx  # cyclonedx-python-lib (test extra): it bundles the schemas
import jsonschema
import pytest
import referencing
from tests.support.layer_tars import layer, layer_of_files

from dockyard.scanner.inventory import Inventory, cyclonedx_json, inventory_layers, spdx_json

SCHEMAS = Path(cyclonedx.__file__).parent / "schema" / "_res"


def validator(version: str) -> Any:
    resources = []
    for name in (
        "spdx.SNAPSHOT.schema.json",
        "jsf-0.82.SNAPSHOT.schema.json",
        "cryptography-defs.SNAPSHOT.schema.json",
    ):
        path = SCHEMAS / name
        if path.exists():
            doc = json.loads(path.read_text())
            # the bom schema refers to them by file name
            resources.append(
                (name.replace(".SNAPSHOT", ""), referencing.Resource.from_contents(doc))
            )
            resources.append((name, referencing.Resource.from_contents(doc)))
    registry = referencing.Registry().with_resources(resources)
    schema = json.loads((SCHEMAS / f"bom-{version}.SNAPSHOT.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=registry, format_checker=cls.FORMAT_CHECKER)


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    lang3 = Path("/usr/share/java/commons-lang3.jar").resolve()
    files = [
        ("/var/lib/dpkg/status", "var/lib/dpkg/status"),
        ("/usr/lib/os-release", "etc/os-release"),
    ]
    if lang3.exists():
        files += [(str(lang3), "a/lang3.jar"), (str(lang3), "b/lang3.jar")]
    blobs = [
        layer_of_files(files),
        layer(
            [
                (
                    "app/node_modules/@scope/pkg/package.json",
                    b'{"name":"@scope/pkg","version":"1.0.0"}',
                )
            ]
        ),
    ]
    return inventory_layers([io.BytesIO(b) for b in blobs])


@pytest.mark.parametrize("version", ["1.5", "1.6"])
def test_the_sbom_is_valid_cyclonedx(inventory: Inventory, version: str) -> None:
    serial = uuid.UUID("3e671687-395b-41f5-a30f-a58921a69b79")
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    bom = cyclonedx_json(
        inventory,
        subject="library/app",
        subject_version="sha256:" + "ab" * 32,
        spec_version=version,  # type: ignore[arg-type]
        serial=serial,
        timestamp=when,
    )
    errors = sorted(validator(version).iter_errors(bom), key=str)
    assert not errors, errors[:3]
    assert bom["specVersion"] == version and bom["serialNumber"] == serial.urn
    assert bom["metadata"]["timestamp"] == "2026-01-02T03:04:05Z"
    components = bom["components"]
    assert components[0]["type"] == "operating-system" and components[0]["name"] == "debian"
    assert len(components) == len(inventory.packages) + 1
    refs = [c["bom-ref"] for c in components]
    assert len(set(refs)) == len(refs)  # the jar at two paths gets two refs
    libc = next(c for c in components if c["name"] == "libc6")
    assert libc["purl"].startswith("pkg:deb/debian/libc6@")
    props = {p["name"]: p["value"] for p in libc["properties"]}
    assert props["dockyard:package:source_name"] == "glibc"
    assert props["dockyard:package:path"] == "/var/lib/dpkg/status"
    scoped = next(c for c in components if c["name"] == "pkg")
    assert scoped["group"] == "@scope" and scoped["purl"] == "pkg:npm/%40scope/pkg@1.0.0"
    json.dumps(bom)  # plain JSON types only


def test_a_broken_sbom_is_caught_by_the_same_validator(inventory: Inventory) -> None:
    # The validation above can fail: a component without a name is refused.
    bom = cyclonedx_json(inventory, subject="library/app")
    del bom["components"][1]["name"]
    assert list(validator("1.6").iter_errors(bom))


# SPDX 2.3: the JSON schema published by the SPDX project (github.com/spdx/spdx-spec, branch
# support/2.3, schemas/spdx-schema.json), kept in tests/support/schemas/.
SPDX_SCHEMA = Path(__file__).parents[1] / "support" / "schemas" / "spdx-2.3.schema.json"


def spdx_validator() -> Any:
    schema = json.loads(SPDX_SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_the_sbom_is_valid_spdx_2_3(inventory: Inventory) -> None:
    doc = spdx_json(
        inventory,
        subject="library/app",
        subject_version="sha256:" + "ab" * 32,
        tool_version="0.1.0",
        timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    errors = sorted(spdx_validator().iter_errors(json.loads(json.dumps(doc))), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
    assert doc["spdxVersion"] == "SPDX-2.3"
    assert doc["creationInfo"]["created"] == "2026-01-02T03:04:05Z"
    ids = [p["SPDXID"] for p in doc["packages"]]
    assert len(ids) == len(set(ids))  # the jar found at two paths gets two ids
    # the image, the OS, then one package per inventory package, each contained by the image
    assert len(doc["packages"]) == 2 + len(inventory.packages)
    contained = {r["relatedSpdxElement"] for r in doc["relationships"][1:]}
    assert contained == set(ids[1:])
    scoped = next(p for p in doc["packages"] if p["name"] == "@scope/pkg")
    assert scoped["externalRefs"][0]["referenceLocator"] == "pkg:npm/%40scope/pkg@1.0.0"
    dpkg = next(p for p in doc["packages"] if p["name"] == "dpkg")
    assert dpkg["comment"] == "read from /var/lib/dpkg/status"


def test_a_schema_break_is_caught() -> None:
    """The schema check can fail: a document missing a required field is refused."""
    doc = spdx_json(Inventory(), subject="x")
    del doc["dataLicense"]
    assert list(spdx_validator().iter_errors(doc))

"""SBOMs stored as Harbor stores them: an accessory artifact of type ``harbor.sbom``.

When an SBOM scan's report arrives (``scan/jobs.py``), its document (the adapter's
``sbom``, SPDX JSON unless the adapter says otherwise) is pushed through the registry,
as a client would push it, into the artifact's repository: an OCI image manifest with
``artifactType`` ``application/vnd.goharbor.harbor.sbom.v1``, the empty config, one layer
holding the document (its media type the report's ``media_type``) and the scanned
artifact as ``subject``. So any OCI client finds it as a referrer
(``GET /v2/<repo>/referrers/<digest>``) and pulls it by digest (skopeo, oras), the artifact
API lists it among the artifact's accessories, and the registry's hooks (quota, audit,
webhooks, replication) see it like any push. The previous SBOM accessories of the artifact
are deleted in the transaction that stores the new report (regenerating replaces; an
identical document has the same digest and stays). Its digest is the ``sbom_digest``
of ``sbom_overview``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit.events import Actor
from dockyard.oci.artifacts import ACCESSORY_HARBOR_SBOM, HARBOR_SBOM
from dockyard.oci.mediatypes import OCI_EMPTY, OCI_MANIFEST
from dockyard.registry import repository as registry_repo
from dockyard.registry.models import Artifact, ArtifactAccessory
from dockyard.registry.service import RegistryService
from dockyard.scan.client import SBOM_MEDIA_TYPE, AdapterError

EMPTY_CONFIG = b"{}"
CREATED_BY = "Dockyard"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def document_of(report: str) -> tuple[bytes, str]:
    """The SBOM document of an adapter's ``HarborSbomReport`` (JSON text) and its media
    type; an ``AdapterError`` when the report holds none."""
    try:
        value = json.loads(report)
    except ValueError:
        raise AdapterError("the SBOM report is not JSON") from None
    sbom = value.get("sbom") if isinstance(value, dict) else None
    if not isinstance(sbom, dict) or not sbom:
        raise AdapterError("the SBOM report holds no SBOM document ('sbom')")
    media_type = value.get("media_type")
    if not isinstance(media_type, str) or not media_type.strip() or len(media_type) > 255:
        media_type = SBOM_MEDIA_TYPE
    return json.dumps(sbom, separators=(",", ":")).encode(), media_type


def accessory_manifest(
    subject_digest: str, subject_media_type: str, subject_size: int, document: bytes, media: str
) -> bytes:
    """The accessory's OCI image manifest (Harbor's SBOM accessory shape)."""
    kind = "SPDX" if "spdx" in media else "CycloneDX" if "cyclonedx" in media else "JSON"
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": HARBOR_SBOM,
        "config": {"mediaType": OCI_EMPTY, "digest": _digest(EMPTY_CONFIG), "size": 2},
        "layers": [
            {
                "mediaType": media,
                "digest": _digest(document),
                "size": len(document),
                "annotations": {"org.opencontainers.image.title": "sbom.json"},
            }
        ],
        "subject": {
            "mediaType": subject_media_type,
            "digest": subject_digest,
            "size": subject_size,
        },
        "annotations": {
            "created-by": CREATED_BY,
            "org.opencontainers.artifact.created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "org.opencontainers.artifact.description": f"{kind} JSON SBOM",
        },
    }
    return json.dumps(manifest, separators=(",", ":")).encode()


async def push_accessory(
    registry: RegistryService,
    repository: str,
    subject_digest: str,
    subject_media_type: str,
    report: str,
    actor: Actor,
) -> str:
    """Push the report's SBOM as the accessory of ``subject_digest`` in ``repository``;
    its digest. Registry refusals (quota, read-only, the subject gone) propagate."""
    document, media = document_of(report)
    await registry.upload_monolithic(
        repository, _digest(EMPTY_CONFIG), _once(EMPTY_CONFIG), len(EMPTY_CONFIG), actor
    )
    await registry.upload_monolithic(
        repository, _digest(document), _once(document), len(document), actor
    )
    subject = await registry.stat_blob(repository, subject_digest)
    body = accessory_manifest(subject_digest, subject_media_type, subject.size, document, media)
    digest = _digest(body)
    await registry.put_manifest(repository, digest, body, OCI_MANIFEST, actor)
    return digest


async def drop_older(
    session: AsyncSession, registry: RegistryService, artifact_id: int, keep: str, actor: Actor
) -> int:
    """Delete the artifact's SBOM accessories other than ``keep`` in ``session`` (the
    transaction that stores the new report, so readers see the old SBOM or the new one),
    through the registry's removal path; how many went."""
    rows = await session.scalars(
        select(Artifact)
        .join(ArtifactAccessory, ArtifactAccessory.artifact_id == Artifact.id)
        .where(
            ArtifactAccessory.subject_artifact_id == artifact_id,
            ArtifactAccessory.type == ACCESSORY_HARBOR_SBOM,
            Artifact.digest != keep,
        )
    )
    dropped = 0
    for old in list(rows):
        target = await registry_repo.find_repository_ref(session, old.repository_name)
        if target is not None:
            await registry.remove_artifact_deeply(session, target, old, actor)
            dropped += 1
    return dropped

"""What kind of artifact a row is, for the console's small labelled icons.

Harbor's ``type`` says IMAGE for an image index too and nothing of signatures; the console
shows six kinds a user tells apart at a glance: image, index, chart, signature, SBOM, other.
"""

from __future__ import annotations

from typing import Any

from dockyard.oci import mediatypes as mt

KINDS = ("image", "index", "chart", "signature", "sbom", "other")

_SIGNATURE_HINTS = ("signature", "cosign", "notary", "notation")
_SBOM_HINTS = ("sbom", "spdx", "cyclonedx")


def _mentions(text: str, hints: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(hint in lowered for hint in hints)


def artifact_kind(artifact: Any) -> str:
    """The kind of a Harbor ``Artifact`` (or anything with its fields)."""
    media_type = mt.base_media_type(getattr(artifact, "manifest_media_type", None) or "")
    if media_type in mt.INDEX_TYPES and (getattr(artifact, "type", "") or "").upper() != "CNAB":
        return "index"
    kind = (getattr(artifact, "type", None) or "").upper()
    described = " ".join(
        value
        for value in (
            getattr(artifact, "artifact_type", None),
            getattr(artifact, "media_type", None),
        )
        if value
    )
    if kind == "SBOM" or _mentions(described, _SBOM_HINTS):
        return "sbom"
    if _mentions(described, _SIGNATURE_HINTS):
        return "signature"
    if kind == "CHART":
        return "chart"
    if kind in ("IMAGE", "WASM"):
        return "image"
    return "other"


def accessory_kind(accessory_type: str | None) -> str:
    """An accessory's kind by Harbor's accessory type (``signature.cosign``, ``harbor.sbom``)."""
    value = (accessory_type or "").lower()
    if value.startswith("signature."):
        return "signature"
    if _mentions(value, _SBOM_HINTS):
        return "sbom"
    return "other"

"""What kind of artifact a manifest is, and the facts Harbor shows about it.

Pure functions over a parsed manifest and (for images and charts) the config
blob's bytes: the Harbor artifact ``type``, the ``media_type`` Harbor reports,
the size, ``extra_attrs``, and the accessory type of a referrer or cosign tag.
"""

from __future__ import annotations

import json
import re
from typing import Any

from dockyard.oci import mediatypes as mt
from dockyard.oci.manifest import ParsedManifest

__all__ = [
    "ACCESSORY_COSIGN",
    "ACCESSORY_HARBOR_SBOM",
    "ACCESSORY_NOTATION",
    "ACCESSORY_SUBJECT",
    "CHART_CONFIG",
    "CNAB_MEDIA_TYPE",
    "MAX_CONFIG_BYTES",
    "accessory_type",
    "artifact_kind",
    "artifact_media_type",
    "artifact_size",
    "cosign_subject",
    "extra_attrs",
]

CHART_CONFIG = "application/vnd.cncf.helm.config.v1+json"
CNAB_MEDIA_TYPE = "application/vnd.cnab.manifest.v1"
WASM_CONFIG = "application/vnd.wasm.config.v1+json"
HARBOR_SBOM = "application/vnd.goharbor.harbor.sbom.v1"
COSIGN_SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
NOTATION_SIGNATURE = "application/vnd.cncf.notary.signature"
# cosign 2.x/3.x "new bundle format": a referrer whose artifactType is a sigstore bundle. An image
# signature's bundle says so in its annotations (cosign's sign predicate, or a bare message
# signature); other predicates are attestations, generic accessories as ``.att`` tags are.
SIGSTORE_BUNDLES = frozenset(
    {"application/vnd.dev.sigstore.bundle.v0.3+json", "application/vnd.dev.sigstore.bundle+json"}
)
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
_BUNDLE_PREDICATE = "dev.sigstore.bundle.predicateType"
_BUNDLE_CONTENT = "dev.sigstore.bundle.content"

# Harbor's accessory types.
ACCESSORY_COSIGN = "signature.cosign"
ACCESSORY_NOTATION = "signature.notation"
ACCESSORY_HARBOR_SBOM = "harbor.sbom"
ACCESSORY_SUBJECT = "subject.accessory"

MAX_CONFIG_BYTES = 4 * 1024 * 1024
"""Configs larger than this are not read for ``extra_attrs`` (real ones are a few KiB)."""

_KNOWN_TYPES = {
    mt.OCI_CONFIG: "IMAGE",
    mt.DOCKER_CONFIG: "IMAGE",
    CHART_CONFIG: "CHART",
    CNAB_MEDIA_TYPE: "CNAB",
    "application/vnd.cnab.config.v1+json": "CNAB",
    WASM_CONFIG: "WASM",
    HARBOR_SBOM: "SBOM",
}
# ``application/vnd.<vendor>.<kind>.config.<version>+json`` names its kind (Harbor's rule).
_CONFIG_KIND = re.compile(r"application/vnd\.[^.]*\.(.+)\.config\.[^.]*\+json")
_WASM_ANNOTATIONS = {
    "module.wasm.image/variant": "compat",
    "run.oci.handler": "wasm",
}
_CNAB_ANNOTATION = "io.cnab.runtime_version"
_IMAGE_ATTRS = ("created", "author", "architecture", "os", "config")
_CHART_ATTRS = (
    "apiVersion",
    "name",
    "version",
    "appVersion",
    "description",
    "type",
    "keywords",
    "home",
    "sources",
    "maintainers",
    "icon",
    "kubeVersion",
    "deprecated",
    "annotations",
    "dependencies",
)
_COSIGN_TAG = re.compile(r"(sha256)-([0-9a-f]{64})\.(sig|att|sbom)")


def _is_wasm(parsed: ParsedManifest) -> bool:
    return any(parsed.annotations.get(k) == v for k, v in _WASM_ANNOTATIONS.items())


def artifact_media_type(parsed: ParsedManifest) -> str:
    """Harbor's ``media_type``: the config's media type; an index's own media type (CNAB's
    for a CNAB bundle); WASM's for an image annotated as a WebAssembly module."""
    if parsed.is_index:
        if _CNAB_ANNOTATION in parsed.annotations:
            return CNAB_MEDIA_TYPE
        return parsed.media_type
    if _is_wasm(parsed):
        return WASM_CONFIG
    return parsed.config.media_type if parsed.config else ""


def artifact_kind(parsed: ParsedManifest) -> str:
    """Harbor's artifact ``type``: IMAGE, CHART, CNAB, WASM, SBOM, the kind a vendor config
    media type names (``application/vnd.x.<kind>.config.v1+json``), else UNKNOWN."""
    media_type = artifact_media_type(parsed)
    if parsed.is_index:
        return "CNAB" if media_type == CNAB_MEDIA_TYPE else "IMAGE"
    for candidate in (parsed.artifact_type, media_type):
        if not candidate:
            continue
        known = _KNOWN_TYPES.get(mt.base_media_type(candidate))
        if known is not None:
            return known
    for candidate in (parsed.artifact_type, media_type):
        found = _CONFIG_KIND.fullmatch(mt.base_media_type(candidate or ""))
        if found is not None:
            return found.group(1).upper()
    return "UNKNOWN"


def artifact_size(parsed: ParsedManifest, children: dict[str, int] | None = None) -> int:
    """Harbor's size: the manifest plus its config and every layer; an index plus its
    children's sizes (``children`` maps child digest to its artifact size)."""
    if parsed.is_index:
        sizes = children or {}
        return parsed.size + sum(sizes.get(str(m.digest), 0) for m in parsed.manifests)
    size = parsed.size + (parsed.config.size if parsed.config else 0)
    return size + sum(layer.size for layer in parsed.layers)


def extra_attrs(kind: str, config: bytes | None) -> dict[str, Any] | None:
    """What Harbor shows as ``extra_attrs``: for an image, the config's created, author,
    architecture, os and config; for a chart, the Chart.yaml fields the config carries.
    None when there is nothing to show or the config is not a JSON object."""
    if config is None or len(config) > MAX_CONFIG_BYTES:
        return None
    wanted = {"IMAGE": _IMAGE_ATTRS, "CHART": _CHART_ATTRS, "WASM": _IMAGE_ATTRS}.get(kind)
    if wanted is None:
        return None
    try:
        document = json.loads(config)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    found = {key: document[key] for key in wanted if document.get(key) is not None}
    return found or None


def accessory_type(parsed: ParsedManifest) -> str:
    """The accessory type Harbor records for a manifest that names a ``subject``."""
    candidates = {
        mt.base_media_type(t)
        for t in (parsed.artifact_type, parsed.config.media_type if parsed.config else None)
        if t
    }
    if COSIGN_SIGNATURE in candidates or any(
        layer.media_type == COSIGN_SIMPLESIGNING for layer in parsed.layers
    ):
        return ACCESSORY_COSIGN
    if candidates & SIGSTORE_BUNDLES and (
        parsed.annotations.get(_BUNDLE_PREDICATE) == COSIGN_SIGN_PREDICATE
        or parsed.annotations.get(_BUNDLE_CONTENT) == "message-signature"
    ):
        return ACCESSORY_COSIGN
    if NOTATION_SIGNATURE in candidates:
        return ACCESSORY_NOTATION
    if HARBOR_SBOM in candidates:
        return ACCESSORY_HARBOR_SBOM
    return ACCESSORY_SUBJECT


def cosign_subject(tag: str) -> tuple[str, str] | None:
    """``sha256-<hex>.sig`` names the cosign signature of ``sha256:<hex>``: returns
    (subject digest, accessory type); ``.att`` and ``.sbom`` attachments are generic
    accessories. None for any other tag."""
    found = _COSIGN_TAG.fullmatch(tag)
    if found is None:
        return None
    algorithm, hex_digest, suffix = found.groups()
    kind = ACCESSORY_COSIGN if suffix == "sig" else ACCESSORY_SUBJECT
    return f"{algorithm}:{hex_digest}", kind

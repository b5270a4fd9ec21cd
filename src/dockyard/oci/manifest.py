"""Parse and validate image manifests and indexes (OCI image spec 1.1, Docker schema 2).

:func:`parse_manifest` turns the raw bytes a client PUTs into a
:class:`ParsedManifest`, or raises an :class:`~dockyard.errors.AppError`
whose message names the field that is wrong. It checks shape only; whether
the blobs and child manifests exist is the caller's business.

Leniency follows what real clients push (docker, buildx, skopeo, crane, oras,
helm, cosign, notation): unknown fields are ignored, ``null`` stands for an
absent optional field (Go clients write it for nil slices and maps), any
well-formed media type is accepted for configs, layers and artifacts, and a
generic ``Content-Type`` such as ``application/json`` counts as no header.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from dockyard.errors import DigestInvalidError, ManifestInvalidError, PayloadTooLargeError
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest

__all__ = [
    "MAX_MANIFEST_BYTES",
    "MAX_SIZE",
    "Descriptor",
    "ParsedManifest",
    "Platform",
    "parse_manifest",
]

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: Largest blob size a descriptor may declare: it must fit a signed 64-bit column.
MAX_SIZE = 2**63 - 1

# RFC 6838 section 4.2 restricted names, loosely: ``type/subtype`` with an
# optional parameter list (sigstore bundles use ``...bundle+json;version=0.2``).
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
    r"(?:[ \t]*;[ -~]*)?"
)
# Content-Type values that say nothing about which manifest this is.
_GENERIC_CONTENT_TYPES = frozenset(
    {
        "",
        "*/*",
        "application/json",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
        "text/plain",
    }
)
_OCI_ARTIFACT_MANIFEST = "application/vnd.oci.artifact.manifest.v1+json"


# --- model -------------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    """Where an index entry runs. ``features`` holds the OCI ``os.features``."""

    architecture: str
    os: str
    variant: str | None = None
    os_version: str | None = None
    features: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version is not None:
            out["os.version"] = self.os_version
        if self.features:
            out["os.features"] = list(self.features)
        if self.variant is not None:
            out["variant"] = self.variant
        return out


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor (the fields Dockyard keeps)."""

    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()
    platform: Platform | None = None

    def to_json(self) -> dict[str, Any]:
        """OCI descriptor JSON; optional fields appear only when set."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.urls:
            out["urls"] = list(self.urls)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out

    @property
    def is_distributable(self) -> bool:
        """False for foreign / non-distributable layers and layers fetched from ``urls``."""
        return not self.urls and self.media_type not in mt.NON_DISTRIBUTABLE_LAYER_TYPES


@dataclass(frozen=True)
class ParsedManifest:
    """A validated manifest or index and the raw bytes it came from."""

    media_type: str
    digest: Digest
    size: int
    raw: bytes
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: str | None
    annotations: dict[str, str]

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEX_TYPES

    @property
    def required_blobs(self) -> tuple[Descriptor, ...]:
        """Blobs the repository must hold: config and distributable layers, once each.

        Layers with ``urls`` or a foreign / non-distributable media type are
        left out (clients fetch them elsewhere); a digest listed twice (the
        empty layer of many Docker images) appears once. Empty for an index.
        """
        if self.config is None:
            return ()
        seen: set[Digest] = set()
        out: list[Descriptor] = []
        for descriptor in (self.config, *self.layers):
            if descriptor is not self.config and not descriptor.is_distributable:
                continue
            if descriptor.digest in seen:
                continue
            seen.add(descriptor.digest)
            out.append(descriptor)
        return tuple(out)

    @property
    def effective_artifact_type(self) -> str | None:
        """What the referrers API reports: ``artifactType``, else the config's media type."""
        if self.artifact_type is not None:
            return self.artifact_type
        if self.config is not None:
            return self.config.media_type
        return None


# --- parsing -----------------------------------------------------------------


def _fail(message: str) -> NoReturn:
    raise ManifestInvalidError(message)


def _type_name(value: object) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__  # pragma: no cover - json yields nothing else


def _short(value: str) -> str:
    return repr(value if len(value) <= 100 else value[:97] + "...")


class _NonFiniteNumberError(ValueError):
    pass


def _reject_constant(name: str) -> NoReturn:
    raise _NonFiniteNumberError(name)


def _load_json(body: bytes) -> Any:
    if not body.strip():
        _fail("manifest body is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(f"manifest is not valid UTF-8 (bad byte at offset {exc.start})")
    if text.startswith("\ufeff"):
        _fail("manifest must not start with a byte order mark")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        _fail("manifest JSON is nested too deeply")
    except json.JSONDecodeError as exc:
        _fail(f"manifest is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
    except _NonFiniteNumberError as exc:
        _fail(f"manifest is not valid JSON: {exc} is not a JSON number")
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        _fail(f"manifest is not valid JSON: {exc}")


def _text(value: object, where: str, *, allow_empty: bool = True) -> str:
    """A JSON string that can be stored anywhere (UTF-8 encodable, no NUL)."""
    if not isinstance(value, str):
        _fail(f"{where} must be a string, got {_type_name(value)}")
    if not allow_empty and not value:
        _fail(f"{where} must not be empty")
    if "\x00" in value:
        _fail(f"{where} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _fail(f"{where} contains an unpaired UTF-16 surrogate escape")
    return value


def _media_type(value: object, where: str) -> str:
    text = _text(value, where, allow_empty=False)
    if not _MEDIA_TYPE.fullmatch(text):
        _fail(f"{where} {_short(text)} is not a valid media type (expected 'type/subtype')")
    return text


def _optional_media_type(doc: Mapping[str, Any], key: str, where: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    return _media_type(value, where)


def _annotations(doc: Mapping[str, Any], where: str) -> dict[str, str]:
    value = doc.get("annotations")
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(f"{where} must be an object of strings, got {_type_name(value)}")
    out: dict[str, str] = {}
    for key, item in value.items():
        _text(key, f"{where} key {_short(key)}", allow_empty=False)
        out[key] = _text(item, f"{where}[{_short(key)}]")
    return out


def _string_list(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        _fail(f"{where} must be an array of strings, got {_type_name(value)}")
    return tuple(_text(item, f"{where}[{i}]", allow_empty=False) for i, item in enumerate(value))


def _platform(value: object, where: str) -> Platform | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        _fail(f"{where} must be an object, got {_type_name(value)}")
    if "architecture" not in value:
        _fail(f"{where}.architecture is required")
    if "os" not in value:
        _fail(f"{where}.os is required")
    architecture = _text(value["architecture"], f"{where}.architecture", allow_empty=False)
    os_name = _text(value["os"], f"{where}.os", allow_empty=False)
    variant = value.get("variant")
    os_version = value.get("os.version")
    features = _string_list(value.get("os.features"), f"{where}.os.features")
    # Docker manifest lists also carry a "features" array; check it, keep nothing.
    _string_list(value.get("features"), f"{where}.features")
    return Platform(
        architecture=architecture,
        os=os_name,
        variant=None if variant is None else _text(variant, f"{where}.variant"),
        os_version=None if os_version is None else _text(os_version, f"{where}.os.version"),
        features=features,
    )


def _size(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(f"{where} must be an integer, got {_type_name(value)}")
    if value < 0:
        _fail(f"{where} must not be negative, got {value}")
    if value > MAX_SIZE:
        _fail(f"{where} is too large (more than {MAX_SIZE})")
    return value


def _descriptor(value: object, where: str) -> Descriptor:
    if not isinstance(value, dict):
        _fail(f"{where} must be a descriptor object, got {_type_name(value)}")
    for key in ("mediaType", "digest", "size"):
        if key not in value:
            _fail(f"{where}.{key} is required")
    media_type = _media_type(value["mediaType"], f"{where}.mediaType")
    raw_digest = _text(value["digest"], f"{where}.digest", allow_empty=False)
    try:
        digest = Digest.parse(raw_digest)
    except DigestInvalidError as exc:
        _fail(f"{where}.digest: {exc.message}")
    size = _size(value["size"], f"{where}.size")
    data = value.get("data")
    if data is not None and not isinstance(data, str):
        _fail(f"{where}.data must be a base64 string, got {_type_name(data)}")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        artifact_type=_optional_media_type(value, "artifactType", f"{where}.artifactType"),
        annotations=_annotations(value, f"{where}.annotations"),
        urls=_string_list(value.get("urls"), f"{where}.urls"),
        platform=_platform(value.get("platform"), f"{where}.platform"),
    )


def _descriptor_list(doc: Mapping[str, Any], key: str) -> tuple[Descriptor, ...]:
    value = doc[key]
    if value is None:
        return ()
    if not isinstance(value, list):
        _fail(f"{key} must be an array of descriptors, got {_type_name(value)}")
    return tuple(_descriptor(item, f"{key}[{i}]") for i, item in enumerate(value))


def _check_schema_version(doc: Mapping[str, Any]) -> None:
    if "schemaVersion" not in doc:
        _fail("schemaVersion is required and must be 2")
    version = doc["schemaVersion"]
    if version == 1 and not isinstance(version, bool):
        _fail(
            "Docker schema 1 manifests are not supported; push an OCI or Docker schema 2 "
            "manifest instead"
        )
    if not (isinstance(version, int) and not isinstance(version, bool) and version == 2):
        if isinstance(version, str):
            shown = _short(version)
        elif isinstance(version, int | float) and not isinstance(version, bool):
            shown = repr(version)[:40]
        elif version is None or isinstance(version, bool):
            shown = json.dumps(version)
        else:
            shown = _type_name(version)
        _fail(f"schemaVersion must be 2, got {shown}")


def _header_media_type(content_type: str | None) -> str | None:
    """The manifest type a ``Content-Type`` header names, or ``None`` for none/generic."""
    if content_type is None:
        return None
    base = mt.base_media_type(content_type)
    if base in _GENERIC_CONTENT_TYPES:
        return None
    return base


def _resolve_media_type(doc: Mapping[str, Any], header: str | None) -> str:
    body_value = doc.get("mediaType")
    body_text = None if body_value is None else _media_type(body_value, "mediaType")
    body = None if body_text is None else body_text.lower()
    if body_text is not None and header is not None and body != header:
        _fail(
            f"Content-Type {_short(header)} does not match the manifest's mediaType "
            f"{_short(body_text)}"
        )
    resolved = body or header
    if resolved is None:
        has_manifests = "manifests" in doc
        has_config = "config" in doc
        if has_manifests and has_config:
            _fail(
                "manifest has both 'config' and 'manifests' and no mediaType; "
                "set mediaType to say which it is"
            )
        if has_manifests:
            return mt.OCI_INDEX
        if has_config:
            return mt.OCI_MANIFEST
        _fail(
            "cannot tell the manifest type: no mediaType field, no manifest Content-Type, "
            "and neither 'config' nor 'manifests'"
        )
    if resolved in mt.SCHEMA1_TYPES:
        _fail(
            "Docker schema 1 manifests are not supported; push an OCI or Docker schema 2 "
            "manifest instead"
        )
    if resolved == _OCI_ARTIFACT_MANIFEST:
        _fail(
            "the OCI artifact manifest was dropped from OCI 1.1; push an image manifest "
            "with artifactType instead"
        )
    if resolved not in mt.SUPPORTED_MANIFEST_TYPES:
        supported = ", ".join(sorted(mt.SUPPORTED_MANIFEST_TYPES))
        _fail(f"unsupported manifest media type {_short(resolved)}; supported: {supported}")
    return resolved


def parse_manifest(
    body: bytes, content_type: str | None, algorithm: str = "sha256"
) -> ParsedManifest:
    """Validate a pushed manifest or index and describe it.

    ``content_type`` is the request's ``Content-Type`` header (parameters are
    ignored). The digest is computed over ``body`` exactly as received with
    ``algorithm``.

    Raises :class:`PayloadTooLargeError` over :data:`MAX_MANIFEST_BYTES`,
    :class:`DigestInvalidError` for an unsupported ``algorithm`` and
    :class:`ManifestInvalidError` for everything else.
    """
    if len(body) > MAX_MANIFEST_BYTES:
        raise PayloadTooLargeError(
            f"manifest is {len(body)} bytes; the limit is {MAX_MANIFEST_BYTES} bytes"
        )
    raw = bytes(body)
    digest = Digest.of(raw, algorithm)
    header = _header_media_type(content_type)
    if header in mt.SCHEMA1_TYPES:
        _fail(
            "Docker schema 1 manifests are not supported; push an OCI or Docker schema 2 "
            "manifest instead"
        )
    doc = _load_json(raw)
    if not isinstance(doc, dict):
        _fail(f"manifest must be a JSON object, got {_type_name(doc)}")
    _check_schema_version(doc)
    media_type = _resolve_media_type(doc, header)
    is_oci = media_type in (mt.OCI_MANIFEST, mt.OCI_INDEX)

    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    if media_type in mt.MANIFEST_TYPES:
        if "config" not in doc:
            _fail("config is required in an image manifest")
        config = _descriptor(doc["config"], "config")
        if "layers" in doc:
            layers = _descriptor_list(doc, "layers")
        elif not is_oci:
            _fail("layers is required in a Docker image manifest")
    else:
        if "manifests" not in doc:
            _fail("manifests is required in an index")
        manifests = _descriptor_list(doc, "manifests")
        if media_type == mt.DOCKER_MANIFEST_LIST:
            for i, child in enumerate(manifests):
                if child.media_type not in mt.MANIFEST_TYPES:
                    _fail(
                        f"manifests[{i}].mediaType {_short(child.media_type)} is not allowed "
                        "in a Docker manifest list; entries must be image manifests"
                    )

    # Docker schema 2 has no subject or artifactType; like the reference
    # registry, ignore them there rather than start referrers from them.
    subject: Descriptor | None = None
    artifact_type: str | None = None
    if is_oci:
        if doc.get("subject") is not None:
            subject = _descriptor(doc["subject"], "subject")
        artifact_type = _optional_media_type(doc, "artifactType", "artifactType")

    # Harbor's artifact size is the sum of these; each fits a 64-bit column, but the
    # sum must too (two layers of 2**63 - 1 bytes overflowed the database).
    declared = len(raw) + sum(d.size for d in (*([config] if config else []), *layers))
    if declared > MAX_SIZE:
        _fail(f"config and layers declare {declared} bytes in all, more than {MAX_SIZE}")

    return ParsedManifest(
        media_type=media_type,
        digest=digest,
        size=len(raw),
        raw=raw,
        config=config,
        layers=layers,
        manifests=manifests,
        subject=subject,
        artifact_type=artifact_type,
        annotations=_annotations(doc, "annotations"),
    )

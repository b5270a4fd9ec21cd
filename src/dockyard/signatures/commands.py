"""The work of ``dockyard sign`` and ``dockyard verify`` against a registry (cli.py holds only
the options). Each step reports through ``say`` so a user sees where a slow registry is."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dockyard.signatures import signing
from dockyard.signatures.limits import MAX_LAYERS
from dockyard.signatures.remote import RegistryClient, RegistryError
from dockyard.signatures.verify import (
    SignatureArtifact,
    SignatureLayer,
    TrustedKey,
    Verdict,
    verify,
)

__all__ = ["Checked", "SignResult", "resolve", "sign_artifact", "verify_artifact"]

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class SignResult:
    subject: str
    signature_digest: str
    where: str  # the tag, or "referrer"
    added: bool


@dataclass(frozen=True, slots=True)
class Checked:
    """One signature found for the artifact and what verification said of it."""

    where: str
    digest: str
    verdict: Verdict


def resolve(client: RegistryClient) -> tuple[str, str, int]:
    """The artifact's (digest, media type, size)."""
    ref = client.reference
    found = client.get_manifest(ref.digest or ref.tag or "latest")
    if found is None:
        raise RegistryError(f"{ref} does not exist: push it first, or check the name and tag")
    data, media_type, digest = found
    return digest, media_type, len(data)


def sign_artifact(
    client: RegistryClient,
    key: signing.PrivateKey,
    *,
    storage: Literal["tag", "referrer"] = "tag",
    say: Say = lambda _: None,
) -> SignResult:
    digest, media_type, size = resolve(client)
    say(f"signing {client.reference.docker_reference}@{digest}")
    payload = signing.simple_signing_payload(client.reference.docker_reference, digest)
    signature = signing.sign(key, payload)
    if storage == "referrer":
        manifest, config = signing.referrer_manifest(
            {"mediaType": media_type, "digest": digest, "size": size}, payload, signature
        )
        say("uploading the payload and the signature manifest (OCI 1.1 referrer)")
        client.push_blob(config.data)
        client.push_blob(payload)
        pushed = signing.SignatureBlob(manifest, signing.OCI_MANIFEST_MEDIA_TYPE).digest
        client.put_manifest(pushed, manifest, signing.OCI_MANIFEST_MEDIA_TYPE)
        return SignResult(digest, pushed, "referrer", True)
    tag = signing.cosign_tag(digest)
    existing_doc: dict[str, Any] | None = None
    existing = client.get_manifest(tag)
    if existing is not None:
        try:
            existing_doc = json.loads(existing[0])
        except ValueError:
            raise RegistryError(f"{tag} holds something that is not a manifest") from None
        if not isinstance(existing_doc, dict):
            raise RegistryError(f"{tag} holds something that is not a manifest")
    layers, changed = signing.append_layer(existing_doc, payload, signature, key)
    if len(layers) > MAX_LAYERS:
        raise RegistryError(f"{tag} already holds {MAX_LAYERS} signatures; remove some first")
    manifest, config = signing.tag_manifest(layers)
    say(f"uploading the payload and the signature manifest ({tag}, {len(layers)} signature(s))")
    client.push_blob(payload)
    client.push_blob(config.data)
    pushed = client.put_manifest(tag, manifest, signing.OCI_MANIFEST_MEDIA_TYPE)
    return SignResult(digest, pushed, tag, changed)


def _artifact(client: RegistryClient, digest: str, data: bytes) -> SignatureArtifact:
    document = json.loads(data)
    layers = []
    for layer in document.get("layers", [])[:MAX_LAYERS]:
        blob = client.get_blob(layer["digest"])
        annotations = layer.get("annotations") or {}
        layers.append(SignatureLayer(layer.get("mediaType", ""), blob, annotations))
    return SignatureArtifact("cosign", digest, data, tuple(layers))


def verify_artifact(
    client: RegistryClient, keys: Sequence[TrustedKey], *, say: Say = lambda _: None
) -> tuple[str, list[Checked]]:
    """Every cosign signature of the artifact (tag scheme and referrers), each judged."""
    digest, _, _ = resolve(client)
    say(f"looking for cosign signatures of {client.reference.docker_reference}@{digest}")
    found: list[tuple[str, str, bytes]] = []
    tag = signing.cosign_tag(digest)
    tagged = client.get_manifest(tag)
    if tagged is not None:
        found.append((tag, tagged[2], tagged[0]))
    for referrer in client.referrers(digest, signing.COSIGN_ARTIFACT_TYPE):
        referrer_digest = referrer.get("digest")
        if not isinstance(referrer_digest, str):
            continue
        manifest = client.get_manifest(referrer_digest)
        if manifest is not None:
            found.append(("referrer", referrer_digest, manifest[0]))
    checked = []
    for where, signature_digest, data in found:
        try:
            artifact = _artifact(client, signature_digest, data)
        except (ValueError, KeyError, TypeError, AttributeError):
            verdict = Verdict(False, "the signature manifest is malformed")
        else:
            verdict = verify(artifact, digest, keys)
        checked.append(Checked(where, signature_digest, verdict))
    return digest, checked

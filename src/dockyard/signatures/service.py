"""Trusted keys, verdicts and the signature status of an artifact.

Verification itself is ``signatures.verify`` (pure: envelopes, payloads, keys,
certificate chains). This module decides *when* it runs and keeps its answers:

- ``SignatureChecker.settle(subject, kind)`` checks the subject's signatures of one
  kind that have no verdict at the project's current key-set version, and stores the
  verdicts. It is bounded: at most ``MAX_SIGNATURES`` signatures per subject and kind,
  ``MAX_LAYERS`` layers of at most ``MAX_LAYER_BYTES`` each, the CPU work in a worker
  thread. Jobs call it (a signature pushed, the keys changed); a pull calls it only when
  no verdict exists yet, once — its answer is then stored for every later pull.
- Key changes bump the project's key-set version for that kind in the same
  transaction, so every older verdict stops counting at once, and enqueue the job that
  recomputes verdicts for the project's signed artifacts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from anyio import to_thread
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit import service as audit
from dockyard.audit.events import Actor, AuditEvent
from dockyard.db.engine import Database
from dockyard.errors import AlreadyExistsError, BadRequestError, NotFoundError, StorageFullError
from dockyard.iam.policy import Action, Principal, Resource
from dockyard.jobs import service as jobs
from dockyard.oci.digest import Digest
from dockyard.projects.models import Project
from dockyard.projects.service import require, resolve_project
from dockyard.registry.models import Artifact
from dockyard.signatures import repository as repo
from dockyard.signatures import schemas
from dockyard.signatures import verify as sigverify
from dockyard.signatures.models import SignatureVerdict, TrustedKey
from dockyard.storage import Storage, blob_key

log = logging.getLogger("dockyard.signatures")

VENDOR_TYPE = "SIGNATURE_VERIFICATION"
"""The job that computes verdicts (``signatures/jobs.py``)."""
MAX_SIGNATURES = 16
"""Signatures of one kind checked per artifact, the newest; older ones are listed, not
checked."""
MAX_LAYERS = 8
MAX_LAYER_BYTES = 256 * 1024
"""A signature's payload or envelope; real ones are a few KiB."""
MAX_KEYS = 64
"""Trusted keys per project."""
MAX_REASON = 1000
RESOURCE_TYPE = "trusted-key"


# --- verdicts ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerdictView:
    signature_id: int
    digest: str
    verified: bool
    reason: str
    key_id: str | None
    signer: str | None


def _view(signature: repo.SignatureRef, row: SignatureVerdict) -> VerdictView:
    return VerdictView(
        signature.artifact_id, signature.digest, row.verified, row.reason, row.key_id, row.signer
    )


def trusted(row: TrustedKey) -> sigverify.TrustedKey:
    identities = tuple(str(i) for i in json.loads(row.identities or "[]"))
    kind: sigverify.SignatureKind = "cosign" if row.kind == "cosign" else "notation"
    return sigverify.TrustedKey(row.id, kind, row.pem, identities, row.description)


class SignatureChecker:
    """Computes and stores verdicts; shared by the pull policy, the jobs and the API."""

    def __init__(self, db: Database, storage: Storage) -> None:
        self.db = db
        self.storage = storage

    async def settle(self, subject_id: int, kind: str) -> list[VerdictView]:
        """Every checked signature of ``kind`` of artifact ``subject_id`` with its verdict
        at the project's current key set (computing and storing the missing ones); empty
        when the project trusts no key of this kind."""
        async with self.db.read() as session:
            subject = await session.get(Artifact, subject_id)
            if subject is None:
                return []
            version = await repo.key_set_version(session, subject.project_id, kind)
            if version is None:
                return []
            rows = await repo.list_keys(session, subject.project_id, kind)
            keys = [trusted(k) for k in rows]
            fingerprints = {k.id: k.key_id for k in rows}
            signatures = await repo.signatures_of(session, subject_id, (kind,), MAX_SIGNATURES)
            stored = await repo.verdicts_for(session, subject_id, kind, version)
            subject_digest = subject.digest
        new_rows: list[dict[str, Any]] = []
        views = []
        for signature in signatures:
            row = stored.get(signature.artifact_id)
            if row is None:
                verdict = await self._check(signature, subject_digest, keys)
                values = {
                    "artifact_id": subject_id,
                    "signature_id": signature.artifact_id,
                    "kind": kind,
                    "key_set_version": version,
                    "verified": bool(verdict.verified),
                    "reason": str(verdict.reason or "")[:MAX_REASON],
                    "key_id": fingerprints.get(verdict.key_id) if verdict.key_id else None,
                    "signer": _short(verdict.signer, 1024),
                }
                new_rows.append(values)
                row = SignatureVerdict(**values)
            views.append(_view(signature, row))
        if new_rows:
            try:
                async with self.db.write() as session:
                    await repo.store_verdicts(session, new_rows)
            except StorageFullError:
                # A full disk must not stop pulls: the answer stands, uncached, this time.
                log.warning("verdicts of artifact %s not stored: storage is full", subject_id)
        return views

    async def _check(
        self,
        signature: repo.SignatureRef,
        subject_digest: str,
        keys: Sequence[sigverify.TrustedKey],
    ) -> sigverify.Verdict:
        loaded = await self._load(signature)
        if isinstance(loaded, str):
            return sigverify.Verdict(False, loaded, None, None)
        try:
            return await to_thread.run_sync(partial(sigverify.verify, loaded, subject_digest, keys))
        except Exception:  # a verifier bug must not make a pull fail or pass: record it
            log.exception("verifying signature %s failed", signature.digest)
            return sigverify.Verdict(False, "the signature could not be checked", None, None)

    async def _load(self, signature: repo.SignatureRef) -> sigverify.SignatureArtifact | str:
        """The signature's manifest and layers from storage, bounded; a string says why not."""
        try:
            manifest = await self.storage.read_bytes(blob_key(signature.digest))
            document = json.loads(manifest)
        except (ValueError, RecursionError):
            return "the signature manifest is not JSON"
        except Exception:
            log.exception("reading signature %s failed", signature.digest)
            return "the signature manifest could not be read"
        described = document.get("layers") if isinstance(document, dict) else None
        if not isinstance(described, list) or not described:
            return "the signature manifest has no layers"
        if len(described) > MAX_LAYERS:
            return f"the signature manifest has more than {MAX_LAYERS} layers"
        layers = []
        for descriptor in described:
            if not isinstance(descriptor, dict):
                return "a layer of the signature manifest is not a descriptor"
            size = descriptor.get("size")
            digest = descriptor.get("digest")
            if not isinstance(size, int) or size < 0 or size > MAX_LAYER_BYTES:
                return f"a signature layer is larger than {MAX_LAYER_BYTES} bytes"
            try:
                data = await self.storage.read_bytes(blob_key(str(Digest.parse(str(digest)))))
            except Exception:
                return f"signature layer {str(digest)[:80]} could not be read"
            annotations = descriptor.get("annotations")
            layers.append(
                sigverify.SignatureLayer(
                    str(descriptor.get("mediaType", "")),
                    data[:MAX_LAYER_BYTES],
                    {str(k): str(v) for k, v in annotations.items()}
                    if isinstance(annotations, dict)
                    else {},
                )
            )
        kind: sigverify.SignatureKind = "cosign" if signature.kind == "cosign" else "notation"
        return sigverify.SignatureArtifact(kind, signature.digest, manifest, tuple(layers))


def _short(value: object, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


# --- signature status ----------------------------------------------------------------------------


async def signature_status(
    checker: SignatureChecker, session: AsyncSession, subject: Artifact
) -> list[schemas.SignatureStatus]:
    """Each signature of ``subject``: kind, digest and, for kinds the project holds keys
    of, whether it verifies (computing a missing verdict) and why not."""
    signatures = await repo.signatures_of(session, subject.id)
    verdicts: dict[int, VerdictView] = {}
    with_keys = set()
    for kind in repo.KINDS:
        if await repo.key_set_version(session, subject.project_id, kind) is not None:
            with_keys.add(kind)
            verdicts.update({v.signature_id: v for v in await checker.settle(subject.id, kind)})
    out = []
    for signature in signatures:
        found = verdicts.get(signature.artifact_id)
        verified: bool | None = False
        key_id = signer = None
        if signature.kind not in with_keys:
            verified, reason = None, f"the project trusts no {signature.kind} key; not checked"
        elif found is None:
            reason = f"not checked: only the newest {MAX_SIGNATURES} signatures of a kind are"
        else:
            verified, reason, key_id, signer = (
                found.verified,
                found.reason,
                found.key_id,
                found.signer,
            )
        out.append(
            schemas.SignatureStatus(
                kind=signature.kind,
                digest=signature.digest,
                media_type=signature.media_type,
                push_time=signature.push_time,
                verified=verified,
                reason=reason,
                key_id=key_id,
                signer=signer,
            )
        )
    return out


# --- trusted keys -------------------------------------------------------------------------------


async def check_access(
    session: AsyncSession, principal: Principal, name_or_id: str, by_name: bool, action: Action
) -> Project:
    """The project, once ``principal`` may ``action`` its trusted keys (they are part of
    its configuration: project admins write, members read)."""
    project, context = await resolve_project(session, principal, name_or_id, by_name)
    require(principal, action, Resource.CONFIGURATION, context)
    return project


def key_view(row: TrustedKey) -> schemas.TrustedKey:
    return schemas.TrustedKey(
        id=row.id,
        kind=row.kind,
        key_id=row.key_id,
        description=row.description,
        identities=list(json.loads(row.identities or "[]")),
        details=dict(json.loads(row.details or "{}")),
        pem=row.pem,
        creator=row.creator,
        creation_time=row.creation_time,
    )


@dataclass(frozen=True, slots=True)
class DescribedKey:
    key_id: str
    details: dict[str, Any]


async def describe(body: schemas.TrustedKeyReq) -> DescribedKey:
    """What the PEM holds, or a 400 saying why it cannot be trusted (run in a thread:
    parsing a certificate chain is CPU work that grows with what the user sent)."""
    identities = _clean_identities(body)
    try:
        info = await to_thread.run_sync(
            partial(sigverify.describe_key, body.kind, body.pem, tuple(identities))
        )
    except ValueError as exc:
        raise BadRequestError(f"the {body.kind} key cannot be trusted: {exc}") from None
    details: dict[str, Any] = {"algorithm": info.algorithm}
    if info.subjects:
        details["subjects"] = list(info.subjects)
    if info.not_after is not None:
        details["not_after"] = info.not_after.isoformat()
    return DescribedKey(info.fingerprint[:255], details)


def _clean_identities(body: schemas.TrustedKeyReq) -> list[str]:
    identities = []
    for identity in body.identities:
        text = identity.strip()
        if not text or len(text) > schemas.MAX_IDENTITY_CHARS or any(ord(c) < 32 for c in text):
            raise BadRequestError(
                "identities must be non-empty lines of at most "
                f"{schemas.MAX_IDENTITY_CHARS} characters"
            )
        identities.append(text)
    if body.kind == "cosign" and identities:
        raise BadRequestError("identities apply to notation certificates, not cosign keys")
    if body.kind == "notation" and not identities:
        raise BadRequestError(
            "a notation root certificate needs the signer identities it may vouch for "
            '(certificate subjects such as "CN=builder,O=Example", or "*" for any)'
        )
    return identities


async def add_key(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    name_or_id: str,
    by_name: bool,
    body: schemas.TrustedKeyReq,
    described: DescribedKey,
) -> int:
    project = await check_access(session, principal, name_or_id, by_name, Action.UPDATE)
    if await repo.key_exists(session, project.project_id, body.kind, described.key_id):
        raise AlreadyExistsError(
            f"project {project.name} already trusts {body.kind} key {described.key_id}"
        )
    if await repo.count_keys(session, project.project_id) >= MAX_KEYS:
        raise BadRequestError(f"a project may trust at most {MAX_KEYS} keys")
    row = TrustedKey(
        project_id=project.project_id,
        kind=body.kind,
        key_id=described.key_id,
        description=body.description,
        pem=body.pem,
        identities=json.dumps(_clean_identities(body)),
        details=json.dumps(described.details),
        creator=principal.name[:255],
    )
    session.add(row)
    await session.flush()
    await _keys_changed(session, project, body.kind)
    await audit.record(
        session,
        actor,
        AuditEvent(
            "create",
            RESOURCE_TYPE,
            f"{project.name}/trusted-keys/{row.id}",
            project.project_id,
            f"trusted {body.kind} key {described.key_id}",
        ),
    )
    return row.id


async def get_key(
    session: AsyncSession, principal: Principal, name_or_id: str, by_name: bool, key_row_id: int
) -> TrustedKey:
    project = await check_access(session, principal, name_or_id, by_name, Action.READ)
    row = await repo.find_key(session, project.project_id, key_row_id)
    if row is None:
        raise NotFoundError(f"trusted key {key_row_id} not found in project {project.name}")
    return row


async def list_keys(
    session: AsyncSession, principal: Principal, name_or_id: str, by_name: bool
) -> list[TrustedKey]:
    project = await check_access(session, principal, name_or_id, by_name, Action.READ)
    return await repo.list_keys(session, project.project_id)


async def delete_key(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    name_or_id: str,
    by_name: bool,
    key_row_id: int,
) -> None:
    project = await check_access(session, principal, name_or_id, by_name, Action.UPDATE)
    row = await repo.find_key(session, project.project_id, key_row_id)
    if row is None:
        raise NotFoundError(f"trusted key {key_row_id} not found in project {project.name}")
    kind, key_id = row.kind, row.key_id
    await session.delete(row)
    await session.flush()
    await _keys_changed(session, project, kind)
    await audit.record(
        session,
        actor,
        AuditEvent(
            "delete",
            RESOURCE_TYPE,
            f"{project.name}/trusted-keys/{key_row_id}",
            project.project_id,
            f"no longer trusts {kind} key {key_id}",
        ),
    )


async def _keys_changed(session: AsyncSession, project: Project, kind: str) -> None:
    """A new key-set version (older verdicts stop counting at once) and the job that
    computes verdicts against it, both in the change's transaction."""
    version = await repo.bump_key_set(session, project.project_id, kind)
    await jobs.enqueue(
        session,
        VENDOR_TYPE,
        vendor_id=project.project_id,
        trigger=jobs.EVENT,
        extra_attrs={"project_id": project.project_id, "kind": kind, "version": version},
    )

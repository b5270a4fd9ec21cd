"""Content trust on the pull path and a project's trusted keys (issue 22), both databases.

Harbor's rule: with ``enable_content_trust_cosign`` (or ``enable_content_trust`` for
Notation) on, a manifest GET/HEAD of an artifact with no signature of that kind is refused
``412 PROJECTPOLICYVIOLATION``. Dockyard's addition: when the project trusts keys of that
kind, the signature must verify against them, and the verdict is stored so later pulls
read it instead of checking again. Signatures are made here with ``cryptography`` in
cosign's format (``tests/support/cosign_sign.py``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import delete, func, select
from starlette.applications import Starlette
from tests.integration.conftest import make_client
from tests.integration.registry_helpers import (
    OCI_MANIFEST,
    digest_of,
    error_code,
    image_manifest,
    push_blob,
    push_image,
)
from tests.support import cosign_sign, notation_sign

from dockyard.audit.models import AuditLog
from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password
from dockyard.projects.models import Project
from dockyard.registry.models import Artifact
from dockyard.signatures.models import SignatureVerdict, TrustedKey, TrustedKeySet

API = "/api/v2.0"
PASSWORD = "Passw0rdPassw0rd"
ROLES = {"admin": 1, "developer": 2, "guest": 3, "maintainer": 4}
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
NOTATION = "application/vnd.cncf.notary.signature"
NOT_SIGNED_COSIGN = "The image is not signed by cosign."


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


async def new_project(admin: httpx.AsyncClient, **metadata: str) -> str:
    name = _name("ct")
    response = await admin.post(
        f"{API}/projects",
        json={"project_name": name, "metadata": {"public": "false", **metadata}},
    )
    assert response.status_code == 201, response.text
    return name


async def set_switch(admin: httpx.AsyncClient, project: str, key: str, value: str) -> None:
    response = await admin.put(f"{API}/projects/{project}", json={"metadata": {key: value}})
    assert response.status_code == 200, response.text


async def member(admin: httpx.AsyncClient, state: AppState, project: str, role: str) -> str:
    username = _name("u")
    async with state.db.write() as session:
        session.add(User(username=username, password=hash_password(PASSWORD)))
    response = await admin.post(
        f"{API}/projects/{project}/members",
        json={"role_id": ROLES[role], "member_user": {"username": username}},
    )
    assert response.status_code == 201, response.text
    return username


async def push_cosign(
    client: httpx.AsyncClient, repo: str, subject: str, signature: cosign_sign.CosignSignature
) -> str:
    """Push a cosign signature of ``subject`` under its tag (cosign's tag scheme)."""
    await push_blob(client, repo, signature.config)
    await push_blob(client, repo, signature.payload)
    tag = cosign_sign.signature_tag(subject)
    response = await client.put(
        f"/v2/{repo}/manifests/{tag}",
        content=signature.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201, response.text
    return signature.digest


async def push_notation(client: httpx.AsyncClient, repo: str, subject: tuple[str, int]) -> str:
    """A referrer with Notation's artifact type (a presence check only needs its type)."""
    envelope = b'{"payload":"e30","protected":"e30","signature":"AA"}'
    config = b"{}"
    config_digest = await push_blob(client, repo, config)
    layer_digest = await push_blob(client, repo, envelope)
    manifest = json.loads(
        image_manifest(
            (config_digest, len(config)),
            [(layer_digest, len(envelope))],
            subject=subject,
            artifact_type=NOTATION,
            config_type="application/vnd.oci.empty.v1+json",
        )
    )
    manifest["layers"][0]["mediaType"] = "application/jose+json"
    body = json.dumps(manifest).encode()
    digest = digest_of(body)
    response = await client.put(
        f"/v2/{repo}/manifests/{digest}", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 201, response.text
    return digest


def refused(response: httpx.Response, message: str | None = NOT_SIGNED_COSIGN) -> bool:
    if response.status_code != 412:
        return False
    if response.request.method == "HEAD":
        return True
    assert error_code(response) == "PROJECTPOLICYVIOLATION"
    if message is not None:
        assert response.json()["errors"][0]["message"].startswith(message.rstrip(".")), (
            response.text
        )
    return True


async def add_key(client: httpx.AsyncClient, project: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(f"{API}/projects/{project}/trusted-keys", json=body)


async def verdict_rows(state: AppState) -> int:
    async with state.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(SignatureVerdict)) or 0)


# --- presence (Harbor's rule) ----------------------------------------------------------------


async def test_unsigned_pull_refused_signed_served_deleted_refused(
    admin: httpx.AsyncClient,
) -> None:
    project = await new_project(admin, enable_content_trust_cosign="true")
    repo = f"{project}/app"
    digest, manifest = await push_image(admin, repo, "1.0")
    for method in ("GET", "HEAD"):
        for ref in ("1.0", digest):
            assert refused(await admin.request(method, f"/v2/{repo}/manifests/{ref}")), ref
    # A missing manifest is still 404, not a policy refusal.
    missing = await admin.get(f"/v2/{repo}/manifests/nope")
    assert missing.status_code == 404

    signature = cosign_sign.sign(cosign_sign.new_key(), repo, digest)
    sig_digest = await push_cosign(admin, repo, digest, signature)
    for method in ("GET", "HEAD"):
        for ref in ("1.0", digest):
            served = await admin.request(method, f"/v2/{repo}/manifests/{ref}")
            assert served.status_code == 200, served.text
    assert (await admin.get(f"/v2/{repo}/manifests/1.0")).content == manifest
    # The signature itself is served (verifiers read it).
    sig_tag = cosign_sign.signature_tag(digest)
    assert (await admin.get(f"/v2/{repo}/manifests/{sig_tag}")).status_code == 200

    deleted = await admin.delete(f"/v2/{repo}/manifests/{sig_digest}")
    assert deleted.status_code == 202, deleted.text
    assert refused(await admin.get(f"/v2/{repo}/manifests/1.0"))

    await set_switch(admin, project, "enable_content_trust_cosign", "false")
    assert (await admin.get(f"/v2/{repo}/manifests/1.0")).status_code == 200


async def test_notation_switch_needs_a_notation_signature(admin: httpx.AsyncClient) -> None:
    project = await new_project(admin, enable_content_trust="true")
    repo = f"{project}/app"
    digest, manifest = await push_image(admin, repo, "1.0")
    assert refused(
        await admin.get(f"/v2/{repo}/manifests/1.0"), "The image is not signed by notation."
    )
    # A cosign signature does not satisfy the Notation switch.
    await push_cosign(admin, repo, digest, cosign_sign.sign(cosign_sign.new_key(), repo, digest))
    assert refused(
        await admin.get(f"/v2/{repo}/manifests/1.0"), "The image is not signed by notation."
    )
    await push_notation(admin, repo, (digest, len(manifest)))
    assert (await admin.get(f"/v2/{repo}/manifests/1.0")).status_code == 200
    # Both switches: both kinds are needed, cosign asked first (Harbor's order).
    await set_switch(admin, project, "enable_content_trust_cosign", "true")
    assert (await admin.get(f"/v2/{repo}/manifests/1.0")).status_code == 200
    await push_image(admin, repo, "2.0", seed=b"other")
    assert refused(await admin.get(f"/v2/{repo}/manifests/2.0"))


async def test_index_is_served_when_signed_and_children_are_checked_alone(
    admin: httpx.AsyncClient,
) -> None:
    """Harbor checks every manifest GET on its own: a signed index is served, and its
    children need their own signatures (``cosign sign --recursive``)."""
    project = await new_project(admin, enable_content_trust_cosign="true")
    repo = f"{project}/multi"
    children = []
    for arch in ("amd64", "arm64"):
        child, body = await push_image(admin, repo, None, seed=arch.encode())
        children.append((child, len(body), arch))
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": d,
                    "size": s,
                    "platform": {"os": "linux", "architecture": a},
                }
                for d, s, a in children
            ],
        }
    ).encode()
    put = await admin.put(
        f"/v2/{repo}/manifests/latest", content=index, headers={"Content-Type": OCI_INDEX}
    )
    assert put.status_code == 201, put.text
    index_digest = digest_of(index)
    assert refused(await admin.get(f"/v2/{repo}/manifests/latest"))
    key = cosign_sign.new_key()
    await push_cosign(admin, repo, index_digest, cosign_sign.sign(key, repo, index_digest))
    assert (await admin.get(f"/v2/{repo}/manifests/latest")).status_code == 200
    child = children[0][0]
    assert refused(await admin.get(f"/v2/{repo}/manifests/{child}"))
    await push_cosign(admin, repo, child, cosign_sign.sign(key, repo, child))
    assert (await admin.get(f"/v2/{repo}/manifests/{child}")).status_code == 200
    assert refused(await admin.get(f"/v2/{repo}/manifests/{children[1][0]}"))


async def test_switches_are_stored_and_read_back(admin: httpx.AsyncClient) -> None:
    project = await new_project(admin)
    for key in ("enable_content_trust", "enable_content_trust_cosign"):
        await set_switch(admin, project, key, "true")
        stored = (await admin.get(f"{API}/projects/{project}/metadatas/{key}")).json()
        assert stored == {key: "true"}


# --- trusted keys ------------------------------------------------------------------------------


async def test_trusted_keys_decide_which_signatures_count(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    project = await new_project(admin, enable_content_trust_cosign="true")
    repo = f"{project}/app"
    digest, _ = await push_image(admin, repo, "1.0", seed=b"keys")
    trusted, stranger = cosign_sign.new_key(), cosign_sign.new_key()
    created = await add_key(
        admin, project, {"kind": "cosign", "pem": cosign_sign.public_pem(trusted)}
    )
    assert created.status_code == 201, created.text
    key_url = created.headers["location"]

    # Signed by a key the project does not trust: refused, saying why.
    await push_cosign(admin, repo, digest, cosign_sign.sign(stranger, repo, digest))
    refusal = await admin.get(f"/v2/{repo}/manifests/1.0")
    assert refused(refusal, "The image is not signed by cosign with a key the project trusts")
    before = await verdict_rows(state)
    assert before >= 1  # the verdict was stored by that pull (or the push's job)

    # A trusted key's signature over another digest does not count either.
    other, _ = await push_image(admin, repo, "2.0", seed=b"other")
    wrong = cosign_sign.sign(trusted, repo, other, nonce="wrong")
    await push_cosign(admin, repo, digest, wrong)
    assert refused(await admin.get(f"/v2/{repo}/manifests/1.0"), None)

    # The trusted key's signature of this digest is served.
    await push_cosign(admin, repo, digest, cosign_sign.sign(trusted, repo, digest, nonce="ok"))
    served = await admin.get(f"/v2/{repo}/manifests/1.0")
    assert served.status_code == 200, served.text

    status = await admin.get(f"{API}/projects/{project}/repositories/app/artifacts/1.0/signatures")
    assert status.status_code == 200, status.text
    listed = status.json()
    assert [s["verified"] for s in listed].count(True) == 1, listed
    assert all(s["kind"] == "cosign" and s["reason"] for s in listed)
    fingerprint = (await admin.get(key_url)).json()["key_id"]
    assert fingerprint.startswith("sha256:")
    assert [s["key_id"] for s in listed if s["verified"]] == [fingerprint], listed

    # Revoke by removal: the same signature stops counting at once.
    assert (await admin.delete(key_url)).status_code == 200
    again = await add_key(
        admin, project, {"kind": "cosign", "pem": cosign_sign.public_pem(stranger)}
    )
    assert again.status_code == 201, again.text
    assert (await admin.get(f"/v2/{repo}/manifests/1.0")).status_code == 200  # stranger's signature
    assert (await admin.delete(again.headers["location"])).status_code == 200


async def test_keys_api_refuses_bad_input_and_outsiders(
    app: Starlette, admin: httpx.AsyncClient, state: AppState
) -> None:
    project = await new_project(admin)
    url = f"{API}/projects/{project}/trusted-keys"
    p521 = cosign_sign.public_pem(cosign_sign.new_key(ec.SECP521R1()))
    good = cosign_sign.public_pem(cosign_sign.new_key())
    cases: list[tuple[dict[str, Any] | bytes, int, str]] = [
        ({"kind": "cosign", "pem": "not a key"}, 400, "not PEM"),
        ({"kind": "cosign", "pem": p521}, 400, "cannot be trusted"),
        ({"kind": "gpg", "pem": good}, 400, "kind"),
        ({"kind": "cosign", "pem": good, "identities": ["CN=x"]}, 400, "identities"),
        ({"kind": "notation", "pem": good}, 400, "identities"),
        ({"kind": "cosign", "pem": good, "extra": 1}, 400, "extra"),
        (b"{", 400, ""),
        (b"x" * (2 * 1024 * 1024), 413, ""),
    ]
    for body, status, words in cases:
        if isinstance(body, bytes):
            response = await admin.post(
                url, content=body, headers={"Content-Type": "application/json"}
            )
        else:
            response = await add_key(admin, project, body)
        assert response.status_code == status, (
            body if isinstance(body, dict) else len(body),
            response.text,
        )
        assert words.lower() in response.json()["errors"][0]["message"].lower()
    async with state.db.read() as session:
        count = await session.scalar(
            select(func.count()).select_from(TrustedKey).where(TrustedKey.pem == good)
        )
    assert count == 0

    # Not found: a project that does not exist, a key of another project.
    assert (await add_key(admin, _name("none"), {"kind": "cosign", "pem": good})).status_code == 404
    other = await new_project(admin)
    made = await add_key(admin, other, {"kind": "cosign", "pem": good})
    assert made.status_code == 201
    key_id = made.headers["location"].rsplit("/", 1)[1]
    assert (await admin.get(f"{url}/{key_id}")).status_code == 404
    assert (await admin.delete(f"{url}/{key_id}")).status_code == 404
    assert (await admin.get(f"{url}/abc")).status_code == 400
    duplicate = await add_key(admin, other, {"kind": "cosign", "pem": good})
    assert duplicate.status_code == 409

    # Members read; only project admins (and system admins) write.
    guest = await member(admin, state, other, "guest")
    maintainer = await member(admin, state, other, "maintainer")
    async with make_client(app, (guest, PASSWORD)) as client:
        listing = await client.get(f"{API}/projects/{other}/trusted-keys")
        assert listing.status_code == 200 and len(listing.json()) == 1
        assert (await add_key(client, other, {"kind": "cosign", "pem": p521})).status_code == 403
    async with make_client(app, (maintainer, PASSWORD)) as client:
        assert (
            await client.delete(f"{API}/projects/{other}/trusted-keys/{key_id}")
        ).status_code == 403
    async with make_client(app) as client:
        assert (await client.get(f"{API}/projects/{other}/trusted-keys")).status_code == 401
        assert (await add_key(client, other, {"kind": "cosign", "pem": good})).status_code == 401
    outsider = await member(admin, state, project, "developer")
    async with make_client(app, (outsider, PASSWORD)) as client:
        assert (await client.get(f"{API}/projects/{other}/trusted-keys")).status_code == 404
    admin_of_other = await member(admin, state, other, "admin")
    async with make_client(app, (admin_of_other, PASSWORD)) as client:
        second = await add_key(client, other, {"kind": "cosign", "pem": p521.replace("A", "B", 1)})
        assert second.status_code == 400
        assert (
            await client.delete(f"{API}/projects/{other}/trusted-keys/{key_id}")
        ).status_code == 200

    async with state.db.read() as session:
        events = (
            await session.execute(
                select(AuditLog.operation, AuditLog.resource_type).where(
                    AuditLog.resource.like(f"{other}/trusted-keys/%")
                )
            )
        ).all()
    assert sorted(events) == [("create", "trusted-key"), ("delete", "trusted-key")]


async def test_a_pull_reads_the_stored_verdict_of_the_current_key_set(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    """The pull path answers from the verdict rows: a verified verdict at the project's
    current key-set version serves the image; one at an older version (keys changed since)
    does not, and another artifact's verdict never counts."""
    project = await new_project(admin, enable_content_trust_cosign="true")
    repo = f"{project}/app"
    digest, _ = await push_image(admin, repo, "1.0", seed=b"stored")
    other, _ = await push_image(admin, repo, "2.0", seed=b"stored-other")
    # Signed by a key the project does not trust, so no computed verdict is ever verified.
    key, stranger = cosign_sign.new_key(), cosign_sign.new_key()
    pushed = {
        subject: await push_cosign(admin, repo, subject, cosign_sign.sign(stranger, repo, subject))
        for subject in (digest, other)
    }
    made = await add_key(admin, project, {"kind": "cosign", "pem": cosign_sign.public_pem(key)})
    assert made.status_code == 201, made.text
    async with state.db.read() as session:
        ids = dict(
            (
                await session.execute(
                    select(Artifact.digest, Artifact.id).where(Artifact.repository_name == repo)
                )
            ).all()
        )
        version = await session.scalar(
            select(TrustedKeySet.version)
            .join(Project, Project.project_id == TrustedKeySet.project_id)
            .where(Project.name == project)
        )
    sig_of = {subject: ids[signature] for subject, signature in pushed.items()}

    async def verdict(subject: str, at: int, verified: bool) -> None:
        async with state.db.write() as session:
            await session.execute(
                delete(SignatureVerdict).where(SignatureVerdict.artifact_id == ids[subject])
            )
            session.add(
                SignatureVerdict(
                    artifact_id=ids[subject],
                    signature_id=sig_of[subject],
                    kind="cosign",
                    key_set_version=at,
                    verified=verified,
                    reason="set by the test",
                )
            )

    await verdict(digest, version - 1, True)
    assert refused(await admin.get(f"/v2/{repo}/manifests/1.0"), None)
    await verdict(digest, version, True)
    assert (await admin.get(f"/v2/{repo}/manifests/1.0")).status_code == 200
    await verdict(other, version, False)
    assert refused(await admin.get(f"/v2/{repo}/manifests/2.0"), None)


async def _verdicts_of(state: AppState, subject_id: int) -> list[tuple[int, bool]]:
    async with state.db.read() as session:
        rows = await session.execute(
            select(SignatureVerdict.key_set_version, SignatureVerdict.verified).where(
                SignatureVerdict.artifact_id == subject_id
            )
        )
        return [(int(v), bool(ok)) for v, ok in rows.all()]


async def _wait_for(state: AppState, subject_id: int, count: int) -> list[tuple[int, bool]]:
    """The job workers run in the app; wait (bounded) for them to store verdicts."""
    for _ in range(200):
        found = await _verdicts_of(state, subject_id)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no verdict stored for artifact {subject_id}: {found}")


async def test_verdicts_are_computed_by_jobs_off_the_pull_path(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    """A signature pushed into a project with keys, and a change of keys, each enqueue the
    job that stores verdicts; no pull is needed."""
    project = await new_project(admin, enable_content_trust_cosign="true")
    repo = f"{project}/app"
    digest, _ = await push_image(admin, repo, "1.0", seed=b"jobs")
    key = cosign_sign.new_key()
    made = await add_key(admin, project, {"kind": "cosign", "pem": cosign_sign.public_pem(key)})
    assert made.status_code == 201, made.text
    await push_cosign(admin, repo, digest, cosign_sign.sign(key, repo, digest))
    async with state.db.read() as session:
        subject_id = await session.scalar(
            select(Artifact.id).where(Artifact.repository_name == repo, Artifact.digest == digest)
        )
    assert subject_id is not None
    first = await _wait_for(state, subject_id, 1)
    assert first[0][1] is True, first
    # A second key: the key set moves on, the job recomputes and drops the old verdict.
    other = await add_key(
        admin, project, {"kind": "cosign", "pem": cosign_sign.public_pem(cosign_sign.new_key())}
    )
    assert other.status_code == 201, other.text
    for _ in range(200):
        now = await _verdicts_of(state, subject_id)
        if len(now) == 1 and now[0][0] > first[0][0]:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"verdicts not recomputed: {now}")
    assert now[0][1] is True
    assert (await admin.get(f"/v2/{repo}/manifests/1.0")).status_code == 200


async def test_signing_clients_pass_as_harbor_lets_them(
    app: Starlette,
    admin: httpx.AsyncClient,
    anon: httpx.AsyncClient,
    state: AppState,
    monkeypatch: Any,
) -> None:
    """A token (or Basic credentials) with push on the repository and a cosign, notation or
    dockyard-sign User-Agent reads the unsigned manifest it is about to sign; pull-only
    callers and other clients do not; ``content_trust_signer_pull: false`` ends it."""
    project = await new_project(admin, enable_content_trust_cosign="true")
    repo = f"{project}/app"
    await push_image(admin, repo, "1.0", seed=b"signer")

    async def token(actions: str) -> str:
        response = await anon.get(
            "/service/token",
            params={
                "service": state.settings.token_service,
                "scope": f"repository:{repo}:{actions}",
            },
            auth=("admin", "Harbor12345"),
        )
        assert response.status_code == 200, response.text
        return str(response.json()["token"])

    url = f"/v2/{repo}/manifests/1.0"
    push_token, pull_token = await token("pull,push"), await token("pull")
    cosign_agent = "cosign/v2.4.1 (linux; amd64) go-containerregistry"
    for bearer, agent, served in (
        (push_token, cosign_agent, True),
        (push_token, "notation/1.2.0", True),
        (push_token, "skopeo/1.13", False),
        (pull_token, cosign_agent, False),
    ):
        headers = {"Authorization": f"Bearer {bearer}", "User-Agent": agent}
        response = await anon.get(url, headers=headers)
        assert (response.status_code == 200) is served, (agent, response.text)
        if not served:
            assert refused(response)
    # Basic credentials on /v2/ (Dockyard takes them): the same right, asked of can().
    basic = await admin.get(url, headers={"User-Agent": "dockyard-sign/1.0"})
    assert basic.status_code == 200, basic.text
    assert refused(await admin.get(url, headers={"User-Agent": "curl/8"}))
    puller = await member(admin, state, project, "guest")
    async with make_client(app, (puller, PASSWORD)) as guest:
        assert refused(await guest.get(url, headers={"User-Agent": cosign_agent}))
    monkeypatch.setattr(state.settings, "content_trust_signer_pull", False)
    off = await anon.get(
        url, headers={"Authorization": f"Bearer {push_token}", "User-Agent": cosign_agent}
    )
    assert refused(off)


async def _push_notation_signed(
    client: httpx.AsyncClient,
    repo: str,
    signer: notation_sign.Signer,
    subject: tuple[str, int],
    signed: tuple[str, int] | None = None,
) -> str:
    """A Notation signature referring to ``subject``, signing ``signed`` (default: it)."""
    envelope = notation_sign.envelope(signer, *(signed or subject))
    config, manifest = notation_sign.referrer_manifest(envelope, *subject)
    await push_blob(client, repo, config)
    await push_blob(client, repo, envelope)
    digest = digest_of(manifest)
    put = await client.put(
        f"/v2/{repo}/manifests/{digest}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert put.status_code == 201, put.text
    return digest


async def test_notation_roots_and_identities_decide_which_signatures_count(
    admin: httpx.AsyncClient,
) -> None:
    project = await new_project(admin, enable_content_trust="true")
    repo = f"{project}/app"
    digest, body = await push_image(admin, repo, "1.0", seed=b"notation-keys")
    subject = (digest, len(body))
    builder, outsider = notation_sign.new_signer(), notation_sign.new_signer("intruder", "Evil")
    made = await add_key(
        admin,
        project,
        {
            "kind": "notation",
            "pem": builder.root_pem,
            "identities": ["x509.subject: CN=builder, O=Example"],
        },
    )
    assert made.status_code == 201, made.text
    notation_refusal = "The image is not signed by notation with a key the project trusts"
    await _push_notation_signed(admin, repo, outsider, subject)
    refusal = await admin.get(f"/v2/{repo}/manifests/1.0")
    assert refused(refusal, notation_refusal)
    assert "trusted root" in refusal.json()["errors"][0]["message"]
    other, other_body = await push_image(admin, repo, "2.0", seed=b"notation-other")
    await _push_notation_signed(admin, repo, builder, subject, (other, len(other_body)))
    assert refused(await admin.get(f"/v2/{repo}/manifests/1.0"), notation_refusal)
    good = await _push_notation_signed(admin, repo, builder, subject)
    served = await admin.get(f"/v2/{repo}/manifests/1.0")
    assert served.status_code == 200, served.text
    status = await admin.get(f"{API}/projects/{project}/repositories/app/artifacts/1.0/signatures")
    verified = [s for s in status.json() if s["verified"]]
    assert [(s["digest"], s["kind"]) for s in verified] == [(good, "notation")], status.text
    assert "CN=builder" in (verified[0]["signer"] or "")

    # Identities: a root the project trusts only for another signer does not count.
    await admin.delete(made.headers["location"])
    narrow = await add_key(
        admin,
        project,
        {"kind": "notation", "pem": builder.root_pem, "identities": ["x509.subject: CN=other"]},
    )
    assert narrow.status_code == 201, narrow.text
    narrowed = await admin.get(f"/v2/{repo}/manifests/1.0")
    assert refused(narrowed, notation_refusal)
    assert "not a trusted identity" in narrowed.json()["errors"][0]["message"]


async def test_the_newest_signatures_are_the_ones_checked(admin: httpx.AsyncClient) -> None:
    """At most 16 signatures of a kind are checked per artifact (a bounded pull): the newest,
    so a re-signed image's latest signature counts however many old ones it carries."""
    project = await new_project(admin, enable_content_trust_cosign="true")
    repo = f"{project}/app"
    digest, _ = await push_image(admin, repo, "1.0", seed=b"many")
    trusted, stranger = cosign_sign.new_key(), cosign_sign.new_key()
    made = await add_key(admin, project, {"kind": "cosign", "pem": cosign_sign.public_pem(trusted)})
    assert made.status_code == 201, made.text
    for n in range(17):
        await push_cosign(
            admin, repo, digest, cosign_sign.sign(stranger, repo, digest, nonce=str(n))
        )
    await push_cosign(admin, repo, digest, cosign_sign.sign(trusted, repo, digest, nonce="last"))
    served = await admin.get(f"/v2/{repo}/manifests/1.0")
    assert served.status_code == 200, served.text
    listed = (
        await admin.get(f"{API}/projects/{project}/repositories/app/artifacts/1.0/signatures")
    ).json()
    assert len(listed) == 18
    assert sum(1 for s in listed if s["verified"]) == 1
    assert sum(1 for s in listed if s["reason"].startswith("not checked")) == 2

"""Dockyard's own operations (not in Harbor's swagger; tagged ``dockyard`` in
``/api/v2.0/openapi.json``): a project's trusted keys, and an artifact's signatures with
their verification state. See ``docs/signatures.md``."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.responses import Response

from dockyard.artifacts import service as artifacts
from dockyard.http.api import (
    ApiRequest,
    Operation,
    created_response,
    empty_response,
    json_response,
    operation,
)
from dockyard.iam.policy import Action, Resource
from dockyard.signatures import schemas, service
from dockyard.signatures.service import SignatureChecker

KEYS = "/projects/{project_name_or_id}/trusted-keys"
KEY = KEYS + "/{key_id}"
SIGNATURES = (
    "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/signatures"
)


@operation("GET", KEYS, None, response=list[schemas.TrustedKey])
async def list_trusted_keys(api: ApiRequest) -> Response:
    """The keys the project trusts (members may read them)."""
    principal = await api.principal()
    async with api.state.db.read() as session:
        rows = await service.list_keys(session, principal, *api.project_ref())
        return json_response([service.key_view(r) for r in rows])


@operation("POST", KEYS, None, body=schemas.TrustedKeyReq, status=201)
async def create_trusted_key(api: ApiRequest) -> Response:
    """Trust a cosign public key or a Notation root certificate (project admins)."""
    principal = await api.principal()
    async with api.state.db.read() as session:
        await service.check_access(session, principal, *api.project_ref(), Action.UPDATE)
    actor = await api.actor()
    body = await api.json(schemas.TrustedKeyReq)
    described = await service.describe(body)
    async with api.state.db.write() as session:
        key_id = await service.add_key(
            session, principal, actor, *api.project_ref(), body, described
        )
    return created_response(f"{api.request.url.path.rstrip('/')}/{key_id}")


@operation("GET", KEY, None, response=schemas.TrustedKey)
async def get_trusted_key(api: ApiRequest) -> Response:
    """One trusted key."""
    principal = await api.principal()
    key_id = api.path_int("key_id")
    async with api.state.db.read() as session:
        row = await service.get_key(session, principal, *api.project_ref(), key_id)
        return json_response(service.key_view(row))


@operation("DELETE", KEY, None)
async def delete_trusted_key(api: ApiRequest) -> Response:
    """Stop trusting a key: signatures made with it stop counting at once."""
    principal = await api.principal()
    actor = await api.actor()
    key_id = api.path_int("key_id")
    async with api.state.db.write() as session:
        await service.delete_key(session, principal, actor, *api.project_ref(), key_id)
    return empty_response()


@operation("GET", SIGNATURES, None, response=list[schemas.SignatureStatus])
async def list_signatures(api: ApiRequest) -> Response:
    """An artifact's cosign and Notation signatures, each verified or why not."""
    principal = await api.principal()
    async with api.state.db.read() as session:
        target = await artifacts.resolve_repository(
            session,
            principal,
            api.path("project_name"),
            unquote(api.path("repository_name")),
            Action.LIST,
            Resource.ACCESSORY,
        )
        subject = await artifacts.resolve_artifact(session, target, api.path("reference"))
    checker = SignatureChecker(api.state.db, api.state.storage)
    async with api.state.db.read() as session:
        found = await service.signature_status(checker, session, subject)
    return json_response(found)


operations: list[Operation] = [
    list_trusted_keys,
    create_trusted_key,
    get_trusted_key,
    delete_trusted_key,
    list_signatures,
]

"""Registry endpoints: the remote registries replication and proxy caches reach.

An endpoint (Harbor's ``Registry``) is a URL, a kind (``kinds.ADAPTERS``), optional
credentials, and how TLS is checked (``insecure``, or a PEM ``ca_certificate``). The
secret is sealed with the settings secret key (``system/secretbox.py``) and never
answered: reads show ``*****`` where one is stored, as Harbor does, and an update that
sends ``*****`` back keeps the stored one.

Nothing here holds a transaction while it talks to a remote: ``ping`` reads the
endpoint, lets go of the session, then connects (``open_adapter``), and records the
status in a second short transaction.

Deleting an endpoint that a replication policy or a proxy cache project uses will be
refused (412): replication policies by ``replication.check_endpoint_unused``, proxy cache
projects here.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit import service as audit
from dockyard.audit.events import Actor, AuditEvent
from dockyard.db.base import utcnow
from dockyard.db.listing import PageRequest, apply_q, fetch_page, parse_q, parse_sort
from dockyard.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    PreconditionFailedError,
)
from dockyard.http.egress import EgressPolicy, EgressRefused
from dockyard.http.outbound import Resolver
from dockyard.projects.models import Project
from dockyard.remotes import repository as repo
from dockyard.remotes.adapter import Adapter, KindInfo
from dockyard.remotes.client import CREDENTIAL_TYPES, Credential, Endpoint, RemoteError
from dockyard.remotes.kinds import ADAPTERS, kind_info, open_adapter
from dockyard.remotes.models import RegistryEndpoint
from dockyard.remotes.schemas import (
    FilterStyle,
    Registry,
    RegistryCredential,
    RegistryEndpointItem,
    RegistryInfo,
    RegistryPing,
    RegistryProviderCredentialPattern,
    RegistryProviderEndpointPattern,
    RegistryProviderInfo,
    RegistryUpdate,
)
from dockyard.system.secretbox import SecretBoxError, open_sealed, seal

MASK = "*****"
"""What reads show for a stored secret (Harbor's spelling)."""
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
UNKNOWN = "unknown"
PING_DEADLINE_FACTOR = 3
"""A ping (token fetch included) may take this many outbound timeouts, never more."""

_MAX_NAME = 255
_MAX_URL = 2048
_MAX_DESCRIPTION = 1024
_MAX_KEY = 255
_MAX_SECRET = 8192
_MAX_CA = 64 * 1024

_COLUMNS: dict[str, ColumnElement[Any]] = {
    "id": RegistryEndpoint.id.expression,
    "name": RegistryEndpoint.name.expression,
    "type": RegistryEndpoint.type.expression,
    "url": RegistryEndpoint.url.expression,
    "status": RegistryEndpoint.status.expression,
    "creation_time": RegistryEndpoint.creation_time.expression,
    "update_time": RegistryEndpoint.update_time.expression,
}


@dataclass(frozen=True, slots=True)
class Reach:
    """How outbound calls to endpoints are made (from the settings)."""

    egress: EgressPolicy
    timeout: float
    resolver: Resolver | None = None


# --- validation ----------------------------------------------------------------------------


def _text(value: str, what: str, limit: int, *, required: bool = False, line: bool = True) -> str:
    value = value.strip() if required else value
    if required and not value:
        raise BadRequestError(f"{what} is required")
    if len(value) > limit:
        raise BadRequestError(f"{what} is longer than {limit} characters")
    allowed = "\t" if line else "\t\n\r"
    if any((ord(ch) < 0x20 and ch not in allowed) or ord(ch) == 0x7F for ch in value):
        raise BadRequestError(f"{what} must not contain control characters")
    return value


def check_url(value: str | None, egress: EgressPolicy) -> str:
    """An absolute ``http(s)`` URL with a host and no credentials, query or fragment,
    that the egress policy does not refuse outright; returned without a trailing ``/``."""
    text = _text((value or "").strip(), "url", _MAX_URL, required=True)
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError):
        raise BadRequestError("url is not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise BadRequestError("url must be an http:// or https:// URL with a host")
    if url.userinfo:
        raise BadRequestError("url must not carry credentials; use credential instead")
    if url.query or url.fragment:
        raise BadRequestError("url must not have a query or a fragment")
    try:
        egress.check_host(url.raw_host.decode("ascii"))
    except EgressRefused as exc:
        raise BadRequestError(f"url is {exc}") from None
    return text.rstrip("/")


def check_kind(value: str | None) -> str:
    kind = (value or "").strip()
    if kind not in ADAPTERS:
        raise BadRequestError(
            f"type {kind[:64]!r} is not supported; supported: {', '.join(sorted(ADAPTERS))}"
            " (Harbor's other adapters are not built yet)"
        )
    return kind


def check_credential(kind: str | None, key: str | None, secret: str | None) -> tuple[str, str, str]:
    """(type, access key, access secret); no type and no secret is anonymous."""
    credential_type = (kind or "").strip()
    access_key = _text(key or "", "credential.access_key", _MAX_KEY)
    access_secret = _text(secret or "", "credential.access_secret", _MAX_SECRET)
    if not credential_type:
        if access_key or access_secret:
            credential_type = "basic"
        else:
            return "", "", ""
    if credential_type not in CREDENTIAL_TYPES:
        raise BadRequestError(f"credential.type must be one of {', '.join(CREDENTIAL_TYPES)}")
    if credential_type == "basic" and not access_key:
        raise BadRequestError("credential.access_key is required for basic credentials")
    if not access_secret:
        raise BadRequestError("credential.access_secret is required")
    if credential_type != "basic" and not access_secret.isascii():
        raise BadRequestError("credential.access_secret must be ASCII (it is sent as a header)")
    return credential_type, access_key, access_secret


def check_ca(value: str | None) -> str:
    """A PEM bundle that loads as CA certificates ("" for none)."""
    text = _text((value or "").strip(), "ca_certificate", _MAX_CA, line=False)
    if not text:
        return ""
    try:
        ssl.create_default_context(cadata=text)
    except (ssl.SSLError, ValueError):
        raise BadRequestError("ca_certificate is not a PEM CA certificate bundle") from None
    return text


def _name(value: str | None) -> str:
    return _text(value or "", "name", _MAX_NAME, required=True)


async def _open_secret(session: AsyncSession, sealed: str) -> str:
    """A stored secret, opened; a 400 saying to set it again when this database's key
    cannot open it (a database from another installation)."""
    try:
        return await open_sealed(session, sealed)
    except SecretBoxError as exc:
        raise BadRequestError(f"the registry's stored secret cannot be used: {exc}") from None


# --- views ---------------------------------------------------------------------------------


def registry_view(row: RegistryEndpoint) -> Registry:
    credential = None
    if row.credential_type:
        credential = RegistryCredential(
            type=row.credential_type,
            access_key=row.access_key,
            access_secret=MASK if row.access_secret else None,
        )
    return Registry(
        id=row.id,
        url=row.url,
        name=row.name,
        credential=credential,
        type=row.type,
        insecure=row.insecure,
        ca_certificate=row.ca_certificate or None,
        description=row.description,
        status=row.status,
        creation_time=row.creation_time,
        update_time=row.update_time,
    )


def info_view(info: KindInfo) -> RegistryInfo:
    return RegistryInfo(
        type=info.kind,
        description=info.description,
        supported_resource_filters=[
            FilterStyle(type=f.type, style=f.style, values=list(f.values) or None)
            for f in info.filters
        ],
        supported_triggers=list(info.triggers),
        supported_copy_by_chunk=info.copy_by_chunk,
    )


def adapter_kinds() -> list[str]:
    """``listRegistryProviderTypes``: the kinds an endpoint may be."""
    return sorted(ADAPTERS)


def provider_infos() -> dict[str, RegistryProviderInfo]:
    """``listRegistryProviderInfos``: per kind, whether its URL is typed in or fixed, and
    its credential is a key and a secret typed in."""
    result = {}
    for kind in sorted(ADAPTERS):
        info = kind_info(kind)
        fixed = info.endpoint_type == "fix"
        result[kind] = RegistryProviderInfo(
            endpoint_pattern=RegistryProviderEndpointPattern(
                endpoint_type="EndpointPatternTypeFix" if fixed else "EndpointPatternTypeStandard",
                endpoints=[RegistryEndpointItem(key=k, value=v) for k, v in info.endpoints] or None,
            ),
            credential_pattern=RegistryProviderCredentialPattern(
                access_key_type="AccessKeyTypeStandard",
                access_secret_type="AccessSecretTypeStandard",  # noqa: S106 - a pattern name
            ),
        )
    return result


# --- management ----------------------------------------------------------------------------


async def _get(session: AsyncSession, registry_id: int) -> RegistryEndpoint:
    row = await repo.find_endpoint(session, registry_id)
    if row is None:
        raise NotFoundError(f"registry {registry_id} not found")
    return row


async def _check_name_free(session: AsyncSession, name: str, registry_id: int | None) -> None:
    other = await repo.find_endpoint_by_name(session, name)
    if other is not None and other.id != registry_id:
        raise ConflictError(f"registry {name!r} already exists")


async def _record(
    session: AsyncSession, operator: Actor, operation: str, row: RegistryEndpoint
) -> None:
    """One endpoint event (its name and URL: never a secret)."""
    await audit.record(
        session,
        operator,
        AuditEvent(operation, "registry", row.name, 0, f"{operation} registry {row.url}"),
    )


async def list_endpoints(
    session: AsyncSession, q: str | None, sort: str | None, name: str | None, page: PageRequest
) -> tuple[list[Registry], int]:
    """``listRegistries`` (``q``/``sort`` keys: id, name, type, url, status, times;
    ``name``, deprecated in Harbor, matches part of the name)."""
    stmt = apply_q(repo.endpoints_query(), parse_q(q), _COLUMNS)
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(RegistryEndpoint.name.like(f"%{escaped}%", escape="\\"))
    order = parse_sort(sort, _COLUMNS)
    rows, total = await fetch_page(session, stmt, page, order, RegistryEndpoint.id.expression)
    return [registry_view(row[0]) for row in rows], total


async def get_endpoint(session: AsyncSession, registry_id: int) -> Registry:
    return registry_view(await _get(session, registry_id))


async def create_endpoint(
    session: AsyncSession, operator: Actor, body: Registry, egress: EgressPolicy
) -> int:
    """``createRegistry``; returns the new endpoint's id."""
    name = _name(body.name)
    kind = check_kind(body.type)
    url = check_url(body.url, egress)
    given = body.credential or RegistryCredential()
    credential_type, key, secret = check_credential(
        given.type, given.access_key, given.access_secret
    )
    row = RegistryEndpoint(
        name=name,
        url=url,
        type=kind,
        description=_text(body.description or "", "description", _MAX_DESCRIPTION, line=False),
        credential_type=credential_type,
        access_key=key,
        access_secret=await seal(session, secret),
        insecure=bool(body.insecure),
        ca_certificate=check_ca(body.ca_certificate),
        status=UNKNOWN,
    )
    await _check_name_free(session, name, None)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise ConflictError(f"registry {name!r} already exists") from None
    await _record(session, operator, "create", row)
    return row.id


async def update_endpoint(
    session: AsyncSession,
    operator: Actor,
    registry_id: int,
    body: RegistryUpdate,
    egress: EgressPolicy,
) -> None:
    """``updateRegistry``: fields the body leaves out keep their value; an
    ``access_secret`` of ``*****`` keeps the stored one."""
    row = await _get(session, registry_id)
    if body.name is not None:
        name = _name(body.name)
        if name != row.name:
            await _check_name_free(session, name, row.id)
            row.name = name
    if body.description is not None:
        row.description = _text(body.description, "description", _MAX_DESCRIPTION, line=False)
    if body.url is not None:
        row.url = check_url(body.url, egress)
    if any(v is not None for v in (body.credential_type, body.access_key, body.access_secret)):
        kind = row.credential_type if body.credential_type is None else body.credential_type
        key = row.access_key if body.access_key is None else body.access_key
        keep = body.access_secret is None or body.access_secret == MASK
        secret = await _open_secret(session, row.access_secret) if keep else body.access_secret
        credential_type, key, secret = check_credential(kind, key, secret)
        row.credential_type, row.access_key = credential_type, key
        row.access_secret = await seal(session, secret)
    if body.insecure is not None:
        row.insecure = body.insecure
    if body.ca_certificate is not None:
        row.ca_certificate = check_ca(body.ca_certificate)
    row.update_time = utcnow()
    try:
        await session.flush()
    except IntegrityError:
        raise ConflictError(f"registry {row.name!r} already exists") from None
    await _record(session, operator, "update", row)


async def delete_endpoint(session: AsyncSession, operator: Actor, registry_id: int) -> None:
    """``deleteRegistry``: 412 while a proxy cache project uses it (replication policies
    are checked by the caller, ``replication.check_endpoint_unused``)."""
    row = await _get(session, registry_id)
    names = list(
        await session.scalars(
            select(Project.name)
            .where(Project.registry_id == registry_id, Project.deleted.is_(False))
            .order_by(Project.name)
            .limit(5)
        )
    )
    if names:
        raise PreconditionFailedError(
            f"registry {registry_id} is used by proxy cache projects ({', '.join(names)}); "
            "delete them first"
        )
    await _record(session, operator, "delete", row)
    await session.delete(row)


async def endpoint_info(session: AsyncSession, registry_id: int) -> RegistryInfo:
    """``getRegistryInfo``: what the endpoint's kind supports (filters, triggers, chunks)."""
    row = await _get(session, registry_id)
    return info_view(kind_info(row.type))


# --- reaching endpoints --------------------------------------------------------------------


async def _endpoint_of(session: AsyncSession, row: RegistryEndpoint) -> Endpoint:
    credential = None
    if row.credential_type:
        secret = await _open_secret(session, row.access_secret)
        credential = Credential(row.credential_type, row.access_key, secret)
    return Endpoint(row.url, credential, row.insecure, row.ca_certificate)


async def open_endpoint(session: AsyncSession, registry_id: int) -> tuple[str, Endpoint]:
    """The kind and the opened endpoint (secret decrypted) of a stored endpoint, for
    replication and the proxy cache; reach it with ``connect`` after the session ends."""
    row = await _get(session, registry_id)
    return row.type, await _endpoint_of(session, row)


def connect(kind: str, endpoint: Endpoint, reach: Reach) -> Adapter:
    """An adapter for the endpoint; the caller closes it (``aclose``)."""
    return open_adapter(
        kind, endpoint, reach.egress, timeout=reach.timeout, resolver=reach.resolver
    )


async def ping_target(
    session: AsyncSession, body: RegistryPing, egress: EgressPolicy
) -> tuple[str, Endpoint]:
    """What ``pingRegistry`` should reach: the stored endpoint ``id`` with the body's
    fields over it (to test an edit before saving), or the body alone."""
    stored: tuple[str, Endpoint] | None = None
    if body.id is not None:
        stored = await open_endpoint(session, body.id)
    if stored is None and not body.url:
        raise BadRequestError("url is required to ping an unsaved registry")
    kind = check_kind(body.type if body.type is not None else stored[0] if stored else None)
    base = stored[1] if stored else Endpoint("")
    url = check_url(body.url, egress) if body.url is not None else base.url
    credential = base.credential
    if any(v is not None for v in (body.credential_type, body.access_key, body.access_secret)):
        old = credential or Credential("")
        secret = body.access_secret
        if secret is None or secret == MASK:
            secret = old.access_secret
        credential_type, key, plain = check_credential(
            body.credential_type if body.credential_type is not None else old.type,
            body.access_key if body.access_key is not None else old.access_key,
            secret,
        )
        credential = Credential(credential_type, key, plain) if credential_type else None
    insecure = base.insecure if body.insecure is None else body.insecure
    ca = base.ca_certificate if body.ca_certificate is None else check_ca(body.ca_certificate)
    return kind, Endpoint(url, credential, insecure, ca)


async def ping(kind: str, endpoint: Endpoint, reach: Reach) -> str | None:
    """Reach the endpoint and check its credentials; the reason it failed, or None."""
    try:
        adapter = connect(kind, endpoint, reach)
    except RemoteError as exc:
        return str(exc)
    try:
        async with asyncio.timeout(reach.timeout * PING_DEADLINE_FACTOR):
            await adapter.ping()
    except RemoteError as exc:
        return str(exc)
    except TimeoutError:
        return f"{endpoint.url}: no answer within {reach.timeout * PING_DEADLINE_FACTOR:g} s"
    finally:
        await adapter.aclose()
    return None


async def record_status(session: AsyncSession, registry_id: int, healthy: bool) -> None:
    row = await repo.find_endpoint(session, registry_id)
    if row is not None:
        row.status = HEALTHY if healthy else UNHEALTHY

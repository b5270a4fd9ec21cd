"""Harbor's ``/ldap`` operations: test a configuration, search the directory's users and
groups, import users (create their Dockyard users before their first sign-in).
Administrators only."""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.responses import Response

from dockyard.errors import BadRequestError, ServiceUnavailableError
from dockyard.http.api import (
    ApiRequest,
    Operation,
    empty_response,
    json_response,
    operation,
)
from dockyard.iam.models import GroupType
from dockyard.iam.policy import Action, Resource, can
from dockyard.iam.providers import ldap
from dockyard.system import config

SEARCH_LIMIT = 100
"""Entries ``searchLdapUser`` answers at most (the directory is asked for no more)."""
IMPORT_LIMIT = 100


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class LdapConf(_Request):
    ldap_url: str | None = None
    ldap_search_dn: str | None = None
    ldap_search_password: str | None = None
    ldap_base_dn: str | None = None
    ldap_filter: str | None = None
    ldap_uid: str | None = None
    ldap_scope: int | None = None
    ldap_connection_timeout: int | None = None
    ldap_verify_cert: bool | None = None


class LdapPingResult(BaseModel):
    success: bool
    message: str


class LdapUser(BaseModel):
    username: str
    realname: str
    email: str


class LdapGroup(BaseModel):
    """Harbor's ``UserGroup`` as a directory search answers it (no id: not stored)."""

    group_name: str
    group_type: int
    ldap_group_dn: str


class LdapImportUsers(_Request):
    ldap_uid_list: list[str]


class LdapFailedImportUser(BaseModel):
    uid: str
    error: str


# LdapConf's fields and the configuration items they override (the timeout is named
# ldap_connection_timeout here, ldap_timeout in /configurations).
_OVERRIDES = {
    "ldap_url": ("url", config.LDAP_URL),
    "ldap_search_dn": ("search_dn", config.LDAP_SEARCH_DN),
    "ldap_search_password": ("search_password", config.LDAP_SEARCH_PASSWORD),
    "ldap_base_dn": ("base_dn", config.LDAP_BASE_DN),
    "ldap_filter": ("filter", config.LDAP_FILTER),
    "ldap_uid": ("uid", config.LDAP_UID),
    "ldap_scope": ("scope", config.LDAP_SCOPE),
    "ldap_connection_timeout": ("timeout", config.LDAP_TIMEOUT),
    "ldap_verify_cert": ("verify_cert", config.LDAP_VERIFY_CERT),
}


async def _administrator(api: ApiRequest, action: Action, what: str) -> None:
    principal = await api.principal()
    await api.require(can(principal, action, Resource.LDAP_USER, None), what)


async def _stored_config(api: ApiRequest) -> ldap.LdapConfig:
    async with api.state.db.read() as session:
        return await ldap.load_config(session)


@operation("POST", "/ldap/ping", "pingLdap", body=LdapConf, response=LdapPingResult)
async def ping_ldap(api: ApiRequest) -> Response:
    """Test an LDAP configuration (the stored one where the body leaves a field out)."""
    await _administrator(api, Action.LIST, "test the LDAP configuration")
    raw = await api.raw_body()
    body = _parse_conf(raw)
    cfg = await _stored_config(api)
    changes: dict[str, Any] = {}
    for field, (attribute, key) in _OVERRIDES.items():
        given = getattr(body, field)
        if given is not None:
            changes[attribute] = config.ITEMS[key].parse(given)
    cfg = dataclasses.replace(cfg, **changes)
    try:
        await api.state.identity.directory.ping(cfg)
    except ServiceUnavailableError as exc:
        return json_response(LdapPingResult(success=False, message=exc.message))
    return json_response(LdapPingResult(success=True, message="the directory answered"))


def _parse_conf(raw: bytes) -> LdapConf:
    """The body (an empty one tests the stored configuration, as in Harbor)."""
    if not raw.strip():
        return LdapConf()
    try:
        conf = LdapConf.model_validate_json(raw)
    except ValidationError as exc:
        where = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()[:5])
        raise BadRequestError(f"invalid request body: {where}") from None
    if not conf.model_fields_set and raw.strip() != b"{}":
        # Fields of something else entirely: a mistake, not a request to test the stored one.
        raise BadRequestError(f"the body names none of LdapConf's fields ({', '.join(_OVERRIDES)})")
    return conf


@operation(
    "GET", "/ldap/users/search", "searchLdapUser", query=("username",), response=list[LdapUser]
)
async def search_ldap_user(api: ApiRequest) -> Response:
    """Directory users whose ``ldap_uid`` is ``username`` exactly (all, up to 100, without)."""
    await _administrator(api, Action.LIST, "search LDAP users")
    name = api.query("username") or None
    cfg = await _stored_config(api)
    if not cfg.url:
        # Nothing to ask: a clear refusal, not a directory that "does not answer".
        raise BadRequestError("no LDAP directory is configured: set ldap_url first")
    found = await api.state.identity.directory.search(cfg, name, SEARCH_LIMIT)
    return json_response(
        [LdapUser(username=u.username, realname=u.realname, email=u.email) for u in found]
    )


@operation(
    "GET",
    "/ldap/groups/search",
    "searchLdapGroup",
    query=("groupname", "groupdn"),
    response=list[LdapGroup],
)
async def search_ldap_group(api: ApiRequest) -> Response:
    """Directory groups whose ``ldap_group_attribute_name`` contains ``groupname``, or the
    group at ``groupdn`` (up to 100; ``*`` and parentheses match themselves)."""
    await _administrator(api, Action.LIST, "search LDAP groups")
    name = api.query("groupname") or None
    dn = (api.query("groupdn") or "").strip() or None
    if name is None and dn is None:
        raise BadRequestError("give groupname or groupdn")
    if name is not None and not ldap.acceptable_name(name):
        raise BadRequestError(
            f"groupname must be 1 to {ldap.MAX_NAME} characters without control characters"
        )
    if dn is not None and not ldap.valid_dn(dn):
        raise BadRequestError("groupdn is not a valid DN (at most 512 characters)")
    cfg = await _stored_config(api)
    if not cfg.url:
        raise BadRequestError("no LDAP directory is configured: set ldap_url first")
    found = await api.state.identity.directory.search_groups(
        cfg, name=None if dn else name, dn=dn, limit=SEARCH_LIMIT
    )
    return json_response(
        [
            LdapGroup(group_name=g.name, group_type=int(GroupType.LDAP), ldap_group_dn=g.dn)
            for g in found
        ]
    )


@operation("POST", "/ldap/users/import", "importLdapUser", body=LdapImportUsers)
async def import_ldap_user(api: ApiRequest) -> Response:
    """Create the Dockyard users of directory entries before they first sign in; the
    ones that cannot be imported are listed with the reason (Harbor's 404 body)."""
    await _administrator(api, Action.CREATE, "import LDAP users")
    body = await api.json(LdapImportUsers)
    if not body.ldap_uid_list or len(body.ldap_uid_list) > IMPORT_LIMIT:
        raise BadRequestError(f"ldap_uid_list must name 1 to {IMPORT_LIMIT} users")
    async with api.state.db.read() as session:
        mode = await config.value(session, config.AUTH_MODE)
    if mode != "ldap_auth":
        raise BadRequestError("LDAP users can be imported only while auth_mode is ldap_auth")
    cfg = await _stored_config(api)
    failed: list[LdapFailedImportUser] = []
    for uid in dict.fromkeys(body.ldap_uid_list):
        reason = await api.state.identity.import_ldap_user(cfg, uid)
        if reason is not None:
            failed.append(LdapFailedImportUser(uid=uid, error=reason))
    if failed:
        return json_response(failed, status=404)
    return empty_response()


operations: list[Operation] = [ping_ldap, search_ldap_user, search_ldap_group, import_ldap_user]

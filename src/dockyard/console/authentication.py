"""The authentication section of the console's system settings, and "Import LDAP users".

The mode (``auth_mode``) is offered only while ``admin`` is the only user, as
``config.update`` enforces; otherwise the page says why it is locked. The LDAP, OIDC
and HTTP auth proxy items are one form (system administrators only), saved through
``system.update_configuration`` as the REST API saves them, with its checks. Secrets
(``ldap_search_password``, ``oidc_client_secret``) are write-only: the form never shows
them, and a blank field leaves the stored one as it is. "Test LDAP server" asks the
same directory service as ``POST /ldap/ping`` with the form's values (the stored
password where the field is blank); "Test OIDC server" asks the same check as
``POST /system/oidc/ping`` (``IdentityService.ping_oidc``: discovery and key set) with
the form's ``oidc_endpoint`` and ``oidc_verify_cert``. The users page's import asks the same
search and onboarding as ``/ldap/users/search`` and ``/ldap/users/import``. The LDAP
group picker (the user groups page, a project's members page) asks the same directory
search as ``/ldap/groups/search``, under the same rule: system administrators only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from dockyard.console.web import PREFIX, Page
from dockyard.errors import AppError, BadRequestError, DeniedError, ServiceUnavailableError
from dockyard.iam import repository as users_repo
from dockyard.iam.groupsync import dn_key
from dockyard.iam.policy import Action, Resource, can
from dockyard.iam.providers import ldap
from dockyard.system import config
from dockyard.system import service as system

CONFIGURATION = PREFIX + "/admin/configuration"
AUTHENTICATION = CONFIGURATION + "/authentication"
LDAP_PING = CONFIGURATION + "/ldap-ping"
OIDC_PING = CONFIGURATION + "/oidc-ping"
USERS = PREFIX + "/admin/users"
LDAP_IMPORT = USERS + "/ldap-import"
SEARCH_LIMIT = 100
IMPORT_LIMIT = 100

# The form's fields: text items, numbers, checkboxes, and write-only secrets.
TEXT_ITEMS = (
    config.LDAP_URL,
    config.LDAP_SEARCH_DN,
    config.LDAP_BASE_DN,
    config.LDAP_FILTER,
    config.LDAP_UID,
    config.AUTHPROXY_ENDPOINT,
    config.AUTHPROXY_TOKENREVIEW_ENDPOINT,
    config.AUTHPROXY_SERVER_CERTIFICATE,
    config.AUTHPROXY_ADMIN_GROUPS,
    config.AUTHPROXY_ADMIN_USERNAMES,
    config.OIDC_NAME,
    config.OIDC_ENDPOINT,
    config.OIDC_CLIENT_ID,
    config.OIDC_SCOPE,
    config.OIDC_USER_CLAIM,
    config.OIDC_GROUPS_CLAIM,
    config.OIDC_ADMIN_GROUP,
    config.OIDC_GROUP_FILTER,
    config.OIDC_EXTRA_REDIRECT_PARMS,
)
NUMBER_ITEMS = (config.LDAP_SCOPE, config.LDAP_TIMEOUT)
CHECK_ITEMS = (
    config.LDAP_VERIFY_CERT,
    config.AUTHPROXY_VERIFY_CERT,
    config.AUTHPROXY_SKIP_SEARCH,
    config.OIDC_VERIFY_CERT,
    config.OIDC_AUTO_ONBOARD,
    config.OIDC_LOGOUT,
    config.PRIMARY_AUTH_MODE,
)
SECRET_ITEMS = (config.LDAP_SEARCH_PASSWORD, config.OIDC_CLIENT_SECRET)
LDAP_FORM = {
    "url": config.LDAP_URL,
    "search_dn": config.LDAP_SEARCH_DN,
    "base_dn": config.LDAP_BASE_DN,
    "filter": config.LDAP_FILTER,
    "uid": config.LDAP_UID,
    "scope": config.LDAP_SCOPE,
    "timeout": config.LDAP_TIMEOUT,
    "verify_cert": config.LDAP_VERIFY_CERT,
}
"""``LdapConfig`` fields and the items the form sends them as (the password aside)."""


def _require_admin(page: Page) -> None:
    if page.principal.is_robot or not can(page.principal, Action.UPDATE, Resource.USER, None):
        raise DeniedError(f"{page.principal.name} may not change the authentication settings")


def offered_modes() -> list[str]:
    """The modes this Dockyard can sign in with (not those it refuses as missing)."""
    item = config.ITEMS[config.AUTH_MODE]
    missing = item.missing_choices or {}
    return [mode for mode in item.choices if mode not in missing]


async def section(session: AsyncSession) -> dict[str, Any]:
    """What the configuration page's authentication section shows."""
    values: dict[str, Any] = {}
    for key in (config.AUTH_MODE, *TEXT_ITEMS, *NUMBER_ITEMS, *CHECK_ITEMS):
        values[key] = await config.value(session, key)
    secrets_set = {key: bool(await config.get_property(session, key)) for key in SECRET_ITEMS}
    return {
        "values": values,
        "modes": offered_modes(),
        "others": await config.users_besides_admin(session),
        "secrets_set": secrets_set,
    }


def _changes(page: Page) -> dict[str, object]:
    changes: dict[str, object] = {}
    for key in TEXT_ITEMS:
        changes[key] = page.field(key).strip().replace("\r\n", "\n")
    for key in NUMBER_ITEMS:
        number = page.int_field(key)
        if number is not None:
            changes[key] = number
    for key in CHECK_ITEMS:
        changes[key] = page.checked(key)
    for key in SECRET_ITEMS:
        secret = page.field(key)
        if secret:  # write-only: blank keeps the stored one
            changes[key] = secret
    return changes


async def update_authentication(page: Page) -> Response:
    """Save the section; the mode only when the form offered it (the select is disabled,
    so not sent, while other users exist)."""
    _require_admin(page)
    changes = _changes(page)
    mode = page.field(config.AUTH_MODE)
    if mode:
        changes[config.AUTH_MODE] = mode
    async with page.state.db.write() as session:
        await system.update_configuration(session, page.actor(), changes)
    return page.redirect(CONFIGURATION + "#authentication", "flash.auth_saved")


async def ldap_ping(page: Page) -> Response:
    """Test the LDAP values in the form (without saving them), as ``POST /ldap/ping``."""
    _require_admin(page)
    async with page.state.db.read() as session:
        cfg = await ldap.load_config(session)
    given = _changes(page)
    overrides: dict[str, Any] = {}
    for attribute, key in LDAP_FORM.items():
        if key in given:
            overrides[attribute] = config.ITEMS[key].parse(given[key])
    if config.LDAP_SEARCH_PASSWORD in given:
        overrides["search_password"] = given[config.LDAP_SEARCH_PASSWORD]
    cfg = dataclasses.replace(cfg, **overrides)
    try:
        await page.state.identity.directory.ping(cfg)
    except ServiceUnavailableError as exc:
        return _ping_answer(page, "ldap", exc.message)
    return _ping_answer(page, "ldap", None)


async def oidc_ping(page: Page) -> Response:
    """Test the form's ``oidc_endpoint`` (with its ``oidc_verify_cert``, nothing saved)
    as ``POST /system/oidc/ping`` does; a refused or unreachable endpoint is the answer."""
    _require_admin(page)
    url = page.field(config.OIDC_ENDPOINT).strip()
    try:
        await page.state.identity.ping_oidc(url, page.checked(config.OIDC_VERIFY_CERT))
    except BadRequestError as exc:
        return _ping_answer(page, "oidc", exc.message)
    return _ping_answer(page, "oidc", None)


PING_MESSAGES = {
    "ldap": ("flash.ldap_ping_ok", "flash.ldap_ping_failed"),
    "oidc": ("flash.oidc_ping_ok", "flash.oidc_ping_failed"),
}
"""Each Test button's messages: it answered, and it failed (with ``{reason}``)."""


def _ping_answer(page: Page, kind: str, failure: str | None) -> Response:
    """A Test button's answer (``kind``: ``ldap`` or ``oidc``): the htmx partial beside
    the button, or, without JavaScript, back to the section with a message."""
    ok_key, failed_key = PING_MESSAGES[kind]
    if page.request.headers.get("HX-Request") == "true":
        return page.render(
            "admin/_auth_ping.html",
            kind=kind,
            message=page.t(ok_key) if failure is None else page.t(failed_key, reason=failure),
            ok=failure is None,
        )
    back = CONFIGURATION + "#authentication"
    if failure is None:
        return page.redirect(back, ok_key)
    return page.redirect(back, failed_key, "error", reason=failure)


# --- "Import LDAP users" on the users page ----------------------------------------------------


async def ldap_import_section(page: Page) -> dict[str, Any] | None:
    """For the users page: None unless ``auth_mode`` is ``ldap_auth``; else the search
    asked (``ldap_q``; ``*`` lists entries), its results and any error."""
    async with page.state.db.read() as session:
        mode = await config.value(session, config.AUTH_MODE)
        if mode != "ldap_auth":
            return None
        cfg = await ldap.load_config(session)
    query = page.query("ldap_q").strip()[:255]
    found: list[dict[str, Any]] = []
    error = ""
    if query:
        try:
            entries = await page.state.identity.directory.search(
                cfg, None if query == "*" else query, SEARCH_LIMIT
            )
        except AppError as exc:
            entries, error = [], exc.message
        async with page.state.db.read() as session:
            for entry in entries:
                known = await users_repo.find_user_by_name(session, entry.username)
                found.append(
                    {
                        "username": entry.username,
                        "realname": entry.realname,
                        "email": entry.email,
                        "exists": known is not None,
                    }
                )
    return {"query": query, "found": found, "error": error, "searched": bool(query)}


async def ldap_import(page: Page) -> Response:
    """Create the Dockyard users of the picked directory entries (as
    ``/ldap/users/import``); those that cannot be are named in the message."""
    _require_admin(page)
    picked = list(dict.fromkeys(u.strip() for u in page.fields("uid") if u.strip()))
    if not picked or len(picked) > IMPORT_LIMIT:
        raise BadRequestError(f"pick 1 to {IMPORT_LIMIT} directory users to import")
    async with page.state.db.read() as session:
        if await config.value(session, config.AUTH_MODE) != "ldap_auth":
            raise BadRequestError("LDAP users can be imported only while auth_mode is ldap_auth")
        cfg = await ldap.load_config(session)
    imported: list[str] = []
    failed: list[str] = []
    for uid in picked:
        reason = await page.state.identity.import_ldap_user(cfg, uid)
        if reason is not None:
            failed.append(f"{uid[:64]} ({reason})")
        else:
            imported.append(uid)
    if failed:
        return page.redirect(
            USERS, "flash.ldap_import_failed", "error", names=", ".join(failed)[:300]
        )
    return page.redirect(USERS, "flash.ldap_imported", names=", ".join(imported)[:300])


# --- the LDAP group picker -------------------------------------------------------------------

GROUP_QUERY = "ldap_group_q"
"""The picker's search field (a query parameter: the page, or the htmx partial)."""


async def ldap_group_picker(page: Page) -> dict[str, Any] | None:
    """The LDAP group picker's state: None unless ``auth_mode`` is ``ldap_auth``. Groups
    are searched (``ldap_group_attribute_name`` contains what was typed, as
    ``/ldap/groups/search?groupname=``) only for those who may search the directory (system
    administrators); each found group says whether it is a user group already."""
    async with page.state.db.read() as session:
        cfg = await ldap.load_config_if_enabled(session)
    if cfg is None:
        return None
    may_search = not page.principal.is_robot and can(
        page.principal, Action.LIST, Resource.LDAP_USER, None
    )
    query = page.query(GROUP_QUERY).strip()[: ldap.MAX_NAME]
    found: list[dict[str, Any]] = []
    error = ""
    searched = bool(query) and may_search
    if searched:
        try:
            groups = await page.state.identity.directory.search_groups(
                cfg, name=None if query == "*" else query, dn=None, limit=SEARCH_LIMIT
            )
        except AppError as exc:
            groups, error = [], exc.message
        async with page.state.db.read() as session:
            known = await users_repo.known_ldap_dn_keys(session, (dn_key(g.dn) for g in groups))
        found = [
            {"name": g.name, "dn": g.dn, "exists": dn_key(g.dn) in known}
            for g in sorted(groups, key=lambda g: (g.name.lower(), g.dn.lower()))
        ]
    return {
        "query": query,
        "found": found,
        "error": error,
        "searched": searched,
        "may_search": may_search,
    }

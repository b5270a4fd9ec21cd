"""LDAP sign-in (``auth_mode: ldap_auth``) with ``ldap3``.

A sign-in binds as ``ldap_search_dn``, finds exactly one entry whose ``ldap_uid``
attribute is the offered name (within ``ldap_filter``, under ``ldap_base_dn``), then
binds as that entry with the offered password. The name is escaped before it goes into
the filter (``*``, ``(``, ``)``, ``\\`` and NUL match themselves, never more), and an
empty password is refused before any bind: LDAP treats a simple bind with a DN and no
password as an anonymous bind that *succeeds*.

Connections are kept in small pools per configuration and reused: searching ones stay
bound as the search DN, and users bind on others, so a token request costs two round
trips on open sockets (search, bind as the user) rather than connects and binds more.
``ldap3`` is synchronous: the work runs in a worker thread. A directory that cannot
be reached is a ``ServiceUnavailableError`` (503), never a wrong password.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import ldap3
from anyio import to_thread
from ldap3.core.exceptions import LDAPBindError, LDAPException, LDAPStartTLSError
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.errors import ServiceUnavailableError
from dockyard.iam.groupsync import canonical_dn, dn_key
from dockyard.system import config, secretbox
from dockyard.system.models import Property

_GROUP_SIDE = frozenset({"member", "uniquemember"})
MAX_NESTING = 8
"""Levels of groups-in-groups walked above the user's own groups."""
MAX_GROUPS = 1000
"""Groups resolved for one user at most (a walk that finds more stops there)."""
PAGE_SIZE = 500
"""Entries asked for per page of a paged search (RFC 2696)."""
_PAGED_RESULTS = "1.2.840.113556.1.4.319"
MAX_ENTRY_READS = 256
"""Group entries read one by one (their ``memberOf``) in one sign-in's walk at most."""
_OR_CHUNK = 50
"""DNs per ``(|(member=…)…)`` filter of the group-side walk."""
POOL_SIZE = 4
"""Idle connections kept per configuration (a sign-in borrows one at a time)."""
MAX_NAME = 255
_T = TypeVar("_T")
_SEARCH = "search"
_BIND = "bind"
"""Pools: connections bound as the search DN, and connections users bind on."""
_SCOPES = {0: ldap3.BASE, 1: ldap3.LEVEL, 2: ldap3.SUBTREE}


@dataclass(frozen=True, slots=True)
class LdapConfig:
    url: str
    search_dn: str
    search_password: str
    base_dn: str
    filter: str
    uid: str
    scope: int
    timeout: int
    verify_cert: bool
    starttls: bool = False
    ca_cert: str = ""
    group_base_dn: str = ""
    group_filter: str = ""
    group_name_attribute: str = "cn"
    group_scope: int = 2
    group_admin_dn: str = ""
    membership_attributes: tuple[str, ...] = ("memberof",)

    @property
    def group_search_base(self) -> str:
        """Where groups are searched: ``ldap_group_base_dn``, else ``ldap_base_dn``."""
        return self.group_base_dn or self.base_dn

    @property
    def user_side(self) -> tuple[str, ...]:
        """Membership attributes read on the member's entry (``memberOf``)."""
        return tuple(a for a in self.membership_attributes if a.lower() not in _GROUP_SIDE)

    @property
    def group_side(self) -> tuple[str, ...]:
        """Membership attributes searched on group entries (``member``, ``uniqueMember``)."""
        return tuple(a for a in self.membership_attributes if a.lower() in _GROUP_SIDE)


async def load_config(session: AsyncSession) -> LdapConfig:
    """The LDAP items as an administrator set them (the password decrypted)."""
    found = await _load(session, require_mode=False)
    assert found is not None
    return found


async def load_config_if_enabled(session: AsyncSession) -> LdapConfig | None:
    """The LDAP items when ``auth_mode`` is ``ldap_auth``, else None: one query for the
    mode, the items and the secret key, as every sign-in asks."""
    return await _load(session, require_mode=True)


SETTINGS_KEYS = (*config.LDAP_KEYS, config.AUTH_MODE, secretbox.SECRET_KEY_PROPERTY)
"""The stored items a sign-in reads: the LDAP items, the mode, the key of the secret box."""


async def read_settings(session: AsyncSession, also: Sequence[str] = ()) -> dict[str, str]:
    """The stored ``SETTINGS_KEYS`` (and ``also``) in one query: a sign-in reads the
    mode and every provider's items at once."""
    keys = tuple(dict.fromkeys((*SETTINGS_KEYS, *also)))
    rows = await session.execute(select(Property.k, Property.v).where(Property.k.in_(keys)))
    return {str(k): str(v) for k, v in rows.all()}


async def _load(session: AsyncSession, *, require_mode: bool) -> LdapConfig | None:
    stored = await read_settings(session)
    if require_mode and stored.get(config.AUTH_MODE) != "ldap_auth":
        return None
    return config_from(stored)


def config_from(stored: dict[str, str]) -> LdapConfig:
    """The LDAP items of ``read_settings``'s answer (the password decrypted)."""
    values: dict[str, Any] = {}
    for key in config.LDAP_KEYS:
        item = config.ITEMS[key]
        raw = stored.get(key)
        values[key] = item.default if raw is None else item.decode(raw)
    try:
        password = secretbox.open_with_key(
            stored.get(secretbox.SECRET_KEY_PROPERTY), stored.get(config.LDAP_SEARCH_PASSWORD, "")
        )
    except secretbox.SecretBoxError as exc:
        raise ServiceUnavailableError(f"LDAP sign-in is not available: {exc}") from None
    return LdapConfig(
        url=str(values[config.LDAP_URL]),
        search_dn=str(values[config.LDAP_SEARCH_DN]),
        search_password=password,
        base_dn=str(values[config.LDAP_BASE_DN]),
        filter=str(values[config.LDAP_FILTER]),
        uid=str(values[config.LDAP_UID]),
        scope=int(values[config.LDAP_SCOPE]),
        timeout=int(values[config.LDAP_TIMEOUT]),
        verify_cert=bool(values[config.LDAP_VERIFY_CERT]),
        starttls=bool(values[config.LDAP_STARTTLS]),
        ca_cert=str(values[config.LDAP_CA_CERT]),
        group_base_dn=str(values[config.LDAP_GROUP_BASE_DN]),
        group_filter=str(values[config.LDAP_GROUP_SEARCH_FILTER]),
        group_name_attribute=str(values[config.LDAP_GROUP_ATTRIBUTE_NAME]),
        group_scope=int(values[config.LDAP_GROUP_SEARCH_SCOPE]),
        group_admin_dn=str(values[config.LDAP_GROUP_ADMIN_DN]),
        membership_attributes=tuple(
            a.strip() for a in str(values[config.LDAP_GROUP_MEMBERSHIP_ATTRIBUTE]).split(",")
        ),
    )


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    dn: str
    username: str
    email: str
    realname: str
    groups: tuple[str, ...] = ()
    """DNs of the groups the user is in, directly or through nested groups (sign-in only)."""
    admin: bool = False
    """Whether one of ``groups`` is ``ldap_group_admin_dn``."""


@dataclass(frozen=True, slots=True)
class DirectoryGroup:
    dn: str
    name: str


def valid_dn(dn: str) -> bool:
    """Whether ``dn`` parses as a DN (``ldap3`` would raise on it mid-search). Spaces
    around ``,`` and ``=`` are allowed (RFC 1779; how Active Directory's DNs are often
    written, and what directories accept)."""
    if not dn or len(dn) > 512 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in dn):
        return False
    try:
        parse_dn(dn, strip=True)
    except (LDAPException, ValueError, IndexError):
        return False
    return True


def acceptable_name(name: str) -> bool:
    """Whether ``name`` may be looked up at all (no control characters, not overlong)."""
    return 0 < len(name) <= MAX_NAME and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in name)


def user_filter(cfg: LdapConfig, name: str | None) -> str:
    """The search filter for ``name``: the configured filter AND ``(<uid>=<escaped name>)``;
    for no name, every entry that has the ``ldap_uid`` attribute."""
    value = "*" if name is None else escape_filter_chars(name)
    match = f"({cfg.uid}={value})"
    return f"(&{cfg.filter}{match})" if cfg.filter else match


class _Pooled:
    """A connection and whom it is bound as now (the search DN, a user, or nobody)."""

    __slots__ = ("as_search", "conn")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.as_search = False


class LdapDirectory:
    """The directory a process signs users in against; holds the connection pools."""

    def __init__(self, pool_size: int = POOL_SIZE) -> None:
        self.pool_size = pool_size
        self._lock = threading.Lock()
        self._idle: dict[tuple[LdapConfig, str], list[_Pooled]] = {}

    async def authenticate(
        self, cfg: LdapConfig, name: str, password: str, *, groups: bool = True
    ) -> DirectoryUser | None:
        """The entry ``name`` signs in as with ``password``, or None when they do not match;
        with ``groups``, with the groups it is in (else those on its entry only)."""
        if not password or not acceptable_name(name):
            return None  # an empty password would be an anonymous bind that succeeds
        self._check_configured(cfg)
        return await to_thread.run_sync(self._authenticate, cfg, name, password, groups)

    async def search(self, cfg: LdapConfig, name: str | None, limit: int) -> list[DirectoryUser]:
        """Entries whose ``ldap_uid`` is ``name`` (``*`` in ``name`` matches itself only),
        or, for no name, up to ``limit`` entries that have one."""
        self._check_configured(cfg)
        if name is not None and not acceptable_name(name):
            return []
        return await to_thread.run_sync(self._search_users, cfg, name, limit)

    async def search_groups(
        self, cfg: LdapConfig, *, name: str | None, dn: str | None, limit: int
    ) -> list[DirectoryGroup]:
        """Groups (``ldap_group_search_filter`` under ``ldap_group_base_dn``) whose
        ``ldap_group_attribute_name`` contains ``name`` (``*`` and parentheses match
        themselves), or the group at ``dn``; up to ``limit``."""
        self._check_configured(cfg)
        if name is not None and not acceptable_name(name):
            return []
        if dn is not None:
            if not valid_dn(dn):
                return []
            dn = canonical_dn(dn)  # ldap3 refuses the spaces valid_dn allows
        return await to_thread.run_sync(self._search_groups, cfg, name, dn, limit)

    async def ping(self, cfg: LdapConfig) -> None:
        """Connect and bind as the search DN with ``cfg`` (not pooled: it may be a
        configuration being tried out); raises ``ServiceUnavailableError`` saying why."""
        self._check_configured(cfg)
        await to_thread.run_sync(self._ping, cfg)

    @staticmethod
    def _ping(cfg: LdapConfig) -> None:
        try:
            conn = _connect(cfg)
        except LDAPException as exc:
            raise ServiceUnavailableError(
                f"the LDAP directory at {cfg.url} cannot be reached ({_why(exc)})"
            ) from None
        try:
            found = LdapDirectory._find(_Pooled(conn), cfg, "(objectClass=*)", 1, base_only=True)
        except LDAPException as exc:
            raise ServiceUnavailableError(
                f"the LDAP directory at {cfg.url} failed ({type(exc).__name__})"
            ) from None
        finally:
            _close(conn)
        if not found:
            raise ServiceUnavailableError(
                f"the directory answered, but ldap_base_dn {cfg.base_dn} is not in it"
            )

    def close(self) -> None:
        with self._lock:
            pools, self._idle = self._idle, {}
        for pool in pools.values():
            for pooled in pool:
                _unbind(pooled)

    @staticmethod
    def _check_configured(cfg: LdapConfig) -> None:
        if not cfg.url or not cfg.base_dn:
            raise ServiceUnavailableError(
                "LDAP sign-in is not configured: set ldap_url and ldap_base_dn",
                retry_after=60,
            )

    def _authenticate(
        self, cfg: LdapConfig, name: str, password: str, groups: bool
    ) -> DirectoryUser | None:
        found = self._run(cfg, lambda pooled: self._find(pooled, cfg, user_filter(cfg, name), 2))
        if len(found) != 1:
            return None  # nobody, or a name that is not unique: no sign-in either way
        user = found[0]

        def bind(pooled: _Pooled) -> bool:
            pooled.as_search = False
            try:
                return bool(pooled.conn.rebind(user=user.dn, password=password))
            except LDAPBindError:
                return False

        # Users bind on connections of their own, so the searching ones stay bound as
        # the search DN: two round trips a sign-in instead of three.
        if not self._run(cfg, bind, _BIND):
            return None
        if not groups:
            return user
        walked = self._walked(cfg, user)
        admin_key = dn_key(cfg.group_admin_dn) if cfg.group_admin_dn else None
        admin = admin_key is not None and any(dn_key(g) == admin_key for g in walked)
        return replace(user, groups=tuple(walked), admin=admin)

    def _walked(self, cfg: LdapConfig, user: DirectoryUser) -> list[str]:
        """The user's groups walked (``_walk_groups``) at every sign-in: a walk kept from
        an earlier sign-in could write back, on this node, a group another node's
        sign-in has just seen removed."""
        return self._run(cfg, lambda pooled: self._walk_groups(pooled, cfg, user))

    def _walk_groups(self, pooled: _Pooled, cfg: LdapConfig, user: DirectoryUser) -> list[str]:
        """The user's groups, then the groups those are in, level by level up to
        ``MAX_NESTING`` levels, each group once (a cycle ends where it closes). Group-side
        attributes cost one search per level (per 50 groups), which also brings the found
        groups' ``memberOf``; other groups' ``memberOf`` costs a read each, at most
        ``MAX_ENTRY_READS`` of them in all."""
        found: dict[str, str] = {}
        # memberOf of the groups a group-side search returned (asked for with them), so
        # they need no read of their own.
        parents: dict[str, list[str]] = {}
        frontier = [user.dn]
        reads = MAX_ENTRY_READS
        for level in range(MAX_NESTING + 1):
            above: list[str] = list(user.groups) if level == 0 else []
            if cfg.user_side and level > 0:
                for dn in frontier:
                    known = parents.get(dn_key(dn))
                    if known is not None:
                        above.extend(known)
                        continue
                    if reads <= 0:
                        continue
                    reads -= 1
                    for entry in self._entries(
                        pooled, cfg, dn, "(objectClass=*)", ldap3.BASE, cfg.user_side, 1
                    ):
                        above.extend(_values(entry, cfg.user_side))
            if cfg.group_side:
                for start in range(0, len(frontier), _OR_CHUNK):
                    chunk = frontier[start : start + _OR_CHUNK]
                    holds = "".join(
                        f"({a}={escape_filter_chars(dn)})" for dn in chunk for a in cfg.group_side
                    )
                    query = (
                        f"(&{cfg.group_filter}(|{holds}))" if cfg.group_filter else f"(|{holds})"
                    )
                    entries = self._entries(
                        pooled,
                        cfg,
                        cfg.group_search_base,
                        query,
                        _SCOPES[cfg.group_scope],
                        cfg.user_side,
                        MAX_GROUPS,
                    )
                    for entry in entries:
                        above.append(str(entry["dn"]))
                        if cfg.user_side:
                            parents[dn_key(str(entry["dn"]))] = _values(entry, cfg.user_side)
            frontier = []
            for dn in above:
                key = dn_key(dn)
                if key not in found and len(found) < MAX_GROUPS:
                    found[key] = dn
                    frontier.append(dn)
            if not frontier:
                break
        return list(found.values())

    def _search_groups(
        self, cfg: LdapConfig, name: str | None, dn: str | None, limit: int
    ) -> list[DirectoryGroup]:
        attribute = cfg.group_name_attribute
        if dn is not None:
            base, scope, query = dn, ldap3.BASE, cfg.group_filter or "(objectClass=*)"
        else:
            value = "*" if not name else f"*{escape_filter_chars(name)}*"
            match = f"({attribute}={value})"
            base, scope = cfg.group_search_base, _SCOPES[cfg.group_scope]
            query = f"(&{cfg.group_filter}{match})" if cfg.group_filter else match

        def search(pooled: _Pooled) -> list[DirectoryGroup]:
            entries = self._entries(pooled, cfg, base, query, scope, [attribute], limit)
            return [
                DirectoryGroup(dn=str(e["dn"]), name=_first(e.get("attributes") or {}, attribute))
                for e in entries
            ]

        return self._run(cfg, search)

    def _entries(
        self,
        pooled: _Pooled,
        cfg: LdapConfig,
        base: str,
        query: str,
        scope: Any,
        attributes: Sequence[str],
        limit: int,
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` entries, asked for in pages of at most ``PAGE_SIZE`` (a search
        that would answer thousands is cut at ``limit``, never read whole)."""
        self._bind_search(pooled, cfg)
        conn = pooled.conn
        found: list[dict[str, Any]] = []
        cookie: Any = None
        while True:
            page = min(PAGE_SIZE, limit - len(found))
            conn.search(
                base,
                query,
                search_scope=scope,
                attributes=list(attributes) or [ldap3.NO_ATTRIBUTES],
                size_limit=limit,
                time_limit=cfg.timeout,
                paged_size=page,
                paged_cookie=cookie,
            )
            found.extend(e for e in conn.response or () if e.get("type") == "searchResEntry")
            controls = (conn.result or {}).get("controls") or {}
            cookie = controls.get(_PAGED_RESULTS, {}).get("value", {}).get("cookie")
            if not cookie or len(found) >= limit:
                break
        if cookie:  # tell the server the rest is not wanted
            with contextlib.suppress(LDAPException):
                conn.search(base, query, search_scope=scope, paged_size=0, paged_cookie=cookie)
        return found[:limit]

    def _search_users(self, cfg: LdapConfig, name: str | None, limit: int) -> list[DirectoryUser]:
        return self._run(cfg, lambda pooled: self._find(pooled, cfg, user_filter(cfg, name), limit))

    @staticmethod
    def _find(
        pooled: _Pooled, cfg: LdapConfig, query: str, limit: int, *, base_only: bool = False
    ) -> list[DirectoryUser]:
        LdapDirectory._bind_search(pooled, cfg)
        pooled.conn.search(
            cfg.base_dn,
            query,
            search_scope=ldap3.BASE if base_only else _SCOPES[cfg.scope],
            attributes=[cfg.uid, "mail", "cn", "displayName", *cfg.user_side],
            size_limit=limit,
            time_limit=cfg.timeout,
        )
        return [
            _directory_user(entry, cfg)
            for entry in pooled.conn.response or ()
            if entry.get("type") == "searchResEntry"
        ]

    @staticmethod
    def _bind_search(pooled: _Pooled, cfg: LdapConfig) -> None:
        if not pooled.as_search:
            try:
                bound = pooled.conn.rebind(
                    user=cfg.search_dn or None, password=cfg.search_password or None
                )
            except LDAPBindError:
                bound = False
            if not bound:
                raise ServiceUnavailableError(
                    "LDAP sign-in is not available: the directory refused ldap_search_dn's "
                    "credentials (check ldap_search_dn and ldap_search_password)"
                )
            pooled.as_search = True

    def _run(self, cfg: LdapConfig, work: Callable[[_Pooled], _T], role: str = _SEARCH) -> _T:
        """``work`` on a pooled connection. One that fails mid-use is dropped and the work
        tried once more on a fresh one (the directory may have restarted since)."""
        for attempt in (1, 2):
            with self._lock:
                idle = self._idle.get((cfg, role))
                pooled = idle.pop() if idle else None
            fresh = pooled is None
            try:
                if pooled is None:
                    pooled = _Pooled(_connect(cfg))
                result = work(pooled)
            except LDAPException as exc:
                if pooled is not None:
                    _unbind(pooled)
                if fresh or attempt == 2:
                    raise ServiceUnavailableError(
                        f"the LDAP directory at {cfg.url} cannot be reached ({_why(exc)}); "
                        "admin and robot accounts can still sign in"
                    ) from None
                continue
            except BaseException:
                if pooled is not None:
                    _unbind(pooled)
                raise
            with self._lock:
                pool = self._idle.setdefault((cfg, role), [])
                kept = len(pool) < self.pool_size
                if kept:
                    pool.append(pooled)
            if not kept:
                _unbind(pooled)
            return result
        raise AssertionError("unreachable")  # pragma: no cover


def _connect(cfg: LdapConfig) -> Any:
    scheme, _, rest = cfg.url.partition("://") if "://" in cfg.url else ("ldap", "", cfg.url)
    host, _, port = rest.rstrip("/").rpartition(":") if ":" in rest else (rest, "", "")
    use_ssl = scheme.lower() == "ldaps"
    tls = _Tls(_tls_context(cfg.verify_cert, cfg.ca_cert), host)
    server = ldap3.Server(
        host,
        port=int(port) if port else (636 if use_ssl else 389),
        use_ssl=use_ssl,
        tls=tls,
        get_info=ldap3.NONE,
        connect_timeout=cfg.timeout,
    )
    conn = ldap3.Connection(
        server, receive_timeout=cfg.timeout, raise_exceptions=False, read_only=True
    )
    try:
        conn.open()
        if cfg.starttls and not use_ssl and not conn.start_tls():
            raise LDAPStartTLSError(f"the directory refused StartTLS: {conn.result}")
    except LDAPException:
        _close(conn)
        raise
    return conn


@functools.lru_cache(maxsize=16)
def _tls_context(verify: bool, ca_pem: str) -> ssl.SSLContext:
    """The TLS context for a directory: its certificate checked (against ``ca_pem``, else
    the system's CAs) and its name matched by Python's own check, unless ``verify`` is
    off. Kept per setting: loading the system's CAs costs milliseconds."""
    context = ssl.create_default_context(cadata=ca_pem or None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Tls(ldap3.Tls):  # type: ignore[misc]  # ldap3 has no type hints
    """``ldap3``'s TLS with our context: its own host name check uses
    ``ssl.match_hostname``, deprecated since Python 3.7 and gone in 3.12."""

    def __init__(self, context: ssl.SSLContext, host: str) -> None:
        super().__init__(validate=context.verify_mode)
        self._context = context
        self._host = host

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=do_handshake,
            server_hostname=self._host,
        )


def _why(exc: LDAPException) -> str:
    """The failure in a few words: its class, and what to check for TLS failures (the
    exception's own text holds socket details, not worth showing)."""
    text = str(exc).lower()
    if "certificate" in text or "hostname" in text or "ssl" in text or "tls" in text:
        return (
            f"{type(exc).__name__}: TLS failed; check the directory's certificate against "
            "ldap_ca_cert and ldap_verify_cert, and ldap_starttls"
        )
    return type(exc).__name__


def _unbind(pooled: _Pooled) -> None:
    _close(pooled.conn)


def _close(conn: Any) -> None:
    """Unbind, and close the socket whatever state it is in (``ldap3`` leaves a broken
    one open)."""
    with contextlib.suppress(LDAPException, OSError):
        conn.unbind()
    sock = getattr(conn, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


def _first(attributes: dict[str, Any], name: str) -> str:
    value = attributes.get(name)
    if isinstance(value, list):
        return str(value[0]) if value else ""
    return "" if value is None else str(value)


def _values(entry: dict[str, Any], names: Sequence[str]) -> list[str]:
    """Every value of the attributes ``names`` (case-insensitively) of ``entry``."""
    wanted = {n.lower() for n in names}
    found: list[str] = []
    for name, value in (entry.get("attributes") or {}).items():
        if name.lower() in wanted:
            found.extend(str(v) for v in (value if isinstance(value, list) else [value]))
    return found


def _directory_user(entry: dict[str, Any], cfg: LdapConfig) -> DirectoryUser:
    attributes = entry.get("attributes") or {}
    return DirectoryUser(
        dn=str(entry["dn"]),
        username=_first(attributes, cfg.uid),
        email=_first(attributes, "mail"),
        realname=_first(attributes, "displayName") or _first(attributes, "cn"),
        groups=tuple(_values(entry, cfg.user_side)),
    )

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
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import ldap3
from anyio import to_thread
from ldap3.core.exceptions import LDAPBindError, LDAPException
from ldap3.utils.conv import escape_filter_chars
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.errors import ServiceUnavailableError
from dockyard.system import config, secretbox
from dockyard.system.models import Property

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


async def load_config(session: AsyncSession) -> LdapConfig:
    """The LDAP items as an administrator set them (the password decrypted)."""
    found = await _load(session, require_mode=False)
    assert found is not None
    return found


async def load_config_if_enabled(session: AsyncSession) -> LdapConfig | None:
    """The LDAP items when ``auth_mode`` is ``ldap_auth``, else None: one query for the
    mode, the items and the secret key, as every sign-in asks."""
    return await _load(session, require_mode=True)


async def _load(session: AsyncSession, *, require_mode: bool) -> LdapConfig | None:
    keys = (*config.LDAP_KEYS, config.AUTH_MODE, secretbox.SECRET_KEY_PROPERTY)
    rows = await session.execute(select(Property.k, Property.v).where(Property.k.in_(keys)))
    stored: dict[str, str] = dict(rows.all())
    if require_mode and stored.get(config.AUTH_MODE) != "ldap_auth":
        return None
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
    )


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    dn: str
    username: str
    email: str
    realname: str


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

    async def authenticate(self, cfg: LdapConfig, name: str, password: str) -> DirectoryUser | None:
        """The entry ``name`` signs in as with ``password``, or None when they do not match."""
        if not password or not acceptable_name(name):
            return None  # an empty password would be an anonymous bind that succeeds
        self._check_configured(cfg)
        return await to_thread.run_sync(self._authenticate, cfg, name, password)

    async def search(self, cfg: LdapConfig, name: str | None, limit: int) -> list[DirectoryUser]:
        """Entries whose ``ldap_uid`` is ``name`` (``*`` in ``name`` matches itself only),
        or, for no name, up to ``limit`` entries that have one."""
        self._check_configured(cfg)
        if name is not None and not acceptable_name(name):
            return []
        return await to_thread.run_sync(self._search_users, cfg, name, limit)

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
                f"the LDAP directory at {cfg.url} cannot be reached ({type(exc).__name__})"
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

    def _authenticate(self, cfg: LdapConfig, name: str, password: str) -> DirectoryUser | None:
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
        return user if self._run(cfg, bind, _BIND) else None

    def _search_users(self, cfg: LdapConfig, name: str | None, limit: int) -> list[DirectoryUser]:
        return self._run(cfg, lambda pooled: self._find(pooled, cfg, user_filter(cfg, name), limit))

    @staticmethod
    def _find(
        pooled: _Pooled, cfg: LdapConfig, query: str, limit: int, *, base_only: bool = False
    ) -> list[DirectoryUser]:
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
        pooled.conn.search(
            cfg.base_dn,
            query,
            search_scope=ldap3.BASE if base_only else _SCOPES[cfg.scope],
            attributes=[cfg.uid, "mail", "cn", "displayName"],
            size_limit=limit,
            time_limit=cfg.timeout,
        )
        return [
            _directory_user(entry, cfg.uid)
            for entry in pooled.conn.response or ()
            if entry.get("type") == "searchResEntry"
        ]

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
                        f"the LDAP directory at {cfg.url} cannot be reached "
                        f"({type(exc).__name__}); admin and robot accounts can still sign in"
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
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED if cfg.verify_cert else ssl.CERT_NONE)
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
    except LDAPException:
        _close(conn)
        raise
    return conn


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


def _directory_user(entry: dict[str, Any], uid: str) -> DirectoryUser:
    attributes = entry.get("attributes") or {}
    return DirectoryUser(
        dn=str(entry["dn"]),
        username=_first(attributes, uid),
        email=_first(attributes, "mail"),
        realname=_first(attributes, "displayName") or _first(attributes, "cn"),
    )

"""Identity: who is calling (Basic credentials) and what a token may grant them."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.engine import Database, insert_ignore
from dockyard.errors import (
    AppError,
    BadRequestError,
    NameInvalidError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)
from dockyard.http.egress import EgressPolicy
from dockyard.http.outbound import OutboundClient
from dockyard.iam import groupsync, revocation
from dockyard.iam import repository as users
from dockyard.iam.accounts import AccountLogin
from dockyard.iam.models import GroupType, User
from dockyard.iam.passwords import verify_password
from dockyard.iam.policy import ANONYMOUS, Action, Principal, ProjectContext, Resource, can
from dockyard.iam.providers import authproxy, ldap
from dockyard.iam.providers.oidc import OidcProvider
from dockyard.iam.ratelimit import LoginThrottle
from dockyard.iam.tokens import IssuedToken, TokenAuthority, TokenClaims
from dockyard.iam.users import validate_username
from dockyard.oci.names import split_repository, validate_repository_name
from dockyard.oci.scope import Scope
from dockyard.projects import service as projects
from dockyard.robots import service as robots
from dockyard.system import config

# Docker scope actions the token service may grant on a repository.
_REPOSITORY_ACTIONS = {"pull": Action.PULL, "push": Action.PUSH, "delete": Action.DELETE}
_VERIFIED_MEMO_SIZE = 4096
_DECISIONS_KEPT = 8192
CATALOG = "catalog"
"""``recheck``'s action for ``GET /v2/_catalog`` (no repository)."""
_BAD_CREDENTIALS = "invalid username or password"
LDAP_GROUP = int(GroupType.LDAP)
ADMIN = "admin"
"""Always signs in from the database, whatever ``auth_mode`` says (as in Harbor)."""
_PREFIXES_FRESH_SECONDS = 1.0
"""How long a process trusts its list of robot name prefixes (``robot_name_prefix``
changed at run time on another node); a login that finds no account reads it again."""


class IdentityService:
    def __init__(
        self,
        db: Database,
        throttle: LoginThrottle,
        tokens: TokenAuthority,
        robot_prefix: str = "robot$",
        recheck_seconds: float = 0.5,
        directory: ldap.LdapDirectory | None = None,
        proxy: authproxy.AuthProxy | None = None,
        outbound: Callable[[], OutboundClient] | None = None,
        cli_secret_max_age_days: int = 0,
    ) -> None:
        self.db = db
        self.directory = directory or ldap.LdapDirectory()
        self.proxy = proxy or authproxy.AuthProxy(
            OutboundClient(EgressPolicy(allow_loopback=True), deadline=10.0)
        )
        self.oidc = OidcProvider(
            outbound or (lambda: OutboundClient(EgressPolicy(), deadline=10.0))
        )
        """The OIDC provider's discovery and keys, cached (``iam/oidc.py`` runs the flow)."""
        self.cli_secret_max_age_days = cli_secret_max_age_days
        self.throttle = throttle
        self.tokens = tokens
        self.robot_prefix = robot_prefix
        self.recheck_seconds = recheck_seconds
        # recheck(): the bearer tokens found to hold, valid while the revocation
        # counter stays at _revision_seen (refusals are decided afresh each time).
        self._engine = db.write_engine.sync_engine
        self._holding: set[tuple[str, str, str | None, tuple[str, ...]]] = set()
        # The accounts found to hold (existing, enabled, with the token's credential),
        # by (name, credential fingerprint), under the same rule: a new scope of a
        # known token needs no account read.
        self._accounts: dict[tuple[str, str], Principal] = {}
        self._revision_seen = -1
        self._local_seen = -1
        self._revision_fresh_until = 0.0
        # A slow KDF on every Basic-authenticated registry request would cap
        # throughput at a few dozen requests a second; remember which secret
        # matched which stored hash, keyed by a MAC that never leaves this process.
        self._memo_key = secrets.token_bytes(32)
        self._verified: dict[bytes, str] = {}
        # Robot name prefixes, longest first (see robot_prefixes).
        self._prefixes: tuple[str, ...] = (robot_prefix,)
        self._prefixes_until = 0.0

    async def authenticate(self, username: str, password: str, source: str) -> Principal:
        """The principal for Basic credentials of a user or a robot (see ``login``)."""
        return (await self.login(username, password, source)).principal

    async def login(self, username: str, password: str, source: str) -> AccountLogin:
        """The account for Basic credentials of a user or a robot.

        Failures say nothing of who exists. The throttle (``LoginThrottle``) is
        asked first, per account *and* address, so a correct password from an
        address with no recent failures always works. Under ``auth_mode: ldap_auth``
        every user but ``admin`` is checked against the directory
        (``iam.providers.ldap``), under ``http_auth`` against the HTTP auth proxy
        (``iam.providers.authproxy``), and onboarded on the first sign-in; robots and
        ``admin`` still sign in from the database, also while the directory or the
        proxy is down.
        The slow hash check is skipped when this process verified the same secret against the same
        stored hash before; the account is read from the database every time, so
        a disabled robot, a changed password or a deleted user stops working at
        once on every node.
        """
        revision = await self._revision()
        async with self._lookups() as session:
            throttled = await self.throttle.check(session, username, source)
            if throttled.retry_after:
                raise TooManyRequestsError(
                    f"too many failed logins; try again in {throttled.retry_after} seconds",
                    retry_after=throttled.retry_after,
                )
            account = directory = proxy = None
            if username != ADMIN and not any(username.startswith(p) for p in self._prefixes):
                # The mode and every provider's items in one query.
                stored = await ldap.read_settings(session, authproxy.SETTINGS_KEYS)
                mode, proxy = authproxy.mode_and_config_from(stored)
                if mode == "ldap_auth":
                    directory = ldap.config_from(stored)
            if directory is None and proxy is None:  # a provider's user needs no row read
                account = await self._find_login(session, username)
            # Nested groups cost round trips: walked only when a group could use them.
            walk = directory is not None and (
                bool(directory.group_admin_dn) or await users.any_group(session, LDAP_GROUP)
            )
        if directory is not None or proxy is not None:
            if proxy is not None:
                login = await self._proxy_login(proxy, username, password, source)
            else:
                assert directory is not None
                login = await self._directory_login(directory, username, password, source, walk)
            if throttled.pair_failures:
                async with self.db.write() as session:
                    await self.throttle.succeeded(session, username, source)
            return login
        if account is None:
            verify_password(None, password)  # the same time as for a real account
            await self._failed(username, source)
            raise UnauthorizedError(_BAD_CREDENTIALS)
        memo = hmac.digest(self._memo_key, f"{username}\0{password}".encode(), hashlib.sha256)
        if not (
            account.stored_hash and self._verified.get(memo) == account.stored_hash
        ) and not account.verify(account.stored_hash, password):
            await self._failed(username, source)
            raise UnauthorizedError(_BAD_CREDENTIALS)
        if len(self._verified) >= _VERIFIED_MEMO_SIZE:
            self._verified.clear()
        self._verified[memo] = account.stored_hash
        if throttled.pair_failures:
            async with self.db.write() as session:
                await self.throttle.succeeded(session, username, source)
        if account.refusal is not None:
            raise UnauthorizedError(account.refusal)
        # The token about to be issued names this account: its first registry request
        # finds it here instead of reading it again.
        key = (account.principal.name, account.credential_fingerprint)
        self._remember_account(key, account.principal, revision)
        return account

    async def _directory_login(
        self, cfg: ldap.LdapConfig, username: str, password: str, source: str, walk: bool
    ) -> AccountLogin:
        found = await self.directory.authenticate(cfg, username, password, groups=walk)
        if found is None:
            await self._failed(username, source)
            raise UnauthorizedError(_BAD_CREDENTIALS)
        login = await self.onboard(found, groups=False)
        user_id = login.principal.user_id
        assert user_id is not None
        # The groups as the directory says now: the rows can() reads for this sign-in's
        # token, its console session and every later token check.
        group_ids = await groupsync.record_sign_in_groups(
            self.db,
            user_id,
            LDAP_GROUP,
            [groupsync.ExternalGroup(name="", dn=dn) for dn in found.groups],
            admin=found.admin,
        )
        if login.principal.sysadmin and not found.admin:
            # An administrator by the flag, or by an admin group the user just left.
            again = await self._find_account(login.principal.name)
            if again is None:
                raise UnauthorizedError(_BAD_CREDENTIALS)
            return again
        principal = dataclasses.replace(
            login.principal, group_ids=group_ids, sysadmin=login.principal.sysadmin or found.admin
        )
        return dataclasses.replace(login, principal=principal)

    async def import_ldap_user(self, cfg: ldap.LdapConfig, uid: str) -> str | None:
        """Create the Dockyard user of the directory entry whose ``ldap_uid`` is ``uid``
        before its first sign-in (``/ldap/users/import`` and the console's import): None
        when done, else why not (listed for the caller, as Harbor does)."""
        found = await self.directory.search(cfg, uid, 2)
        if len(found) != 1:
            return "not found in the directory" if not found else "more than one entry has it"
        async with self.db.read() as session:
            if await users.find_user_by_name(session, found[0].username) is not None:
                return "the user already exists"
        try:
            await self.onboard(found[0])
        except AppError as exc:
            return exc.message
        return None

    async def ping_oidc(self, url: str, verify_cert: bool) -> None:
        """Does ``url`` (an ``oidc_endpoint`` being tried out, not stored) answer OIDC
        discovery and publish its keys? ``POST /system/oidc/ping`` and the console's "Test
        OIDC server" both ask here; what failed is a ``BadRequestError`` that says so."""
        endpoint = config.ITEMS[config.OIDC_ENDPOINT].parse(url)
        if not endpoint:
            raise BadRequestError("url is required: the OIDC provider's issuer URL")
        try:
            await self.oidc.ping(str(endpoint), verify_cert)
        except ServiceUnavailableError as exc:
            raise BadRequestError(exc.message) from None

    async def ldap_group(self, dn: str) -> ldap.DirectoryGroup:
        """The directory's group at ``dn`` (within ``ldap_group_search_filter``), as an
        LDAP user group is created by DN: refused unless ``auth_mode`` is ``ldap_auth``
        and the directory has it."""
        dn = _group_dn(dn)
        async with self.db.read() as session:
            cfg = await ldap.load_config_if_enabled(session)
        if cfg is None:
            raise BadRequestError(
                "LDAP user groups (group_type 1) need auth_mode ldap_auth: their members "
                "are found at LDAP sign-in"
            )
        found = await self.directory.search_groups(cfg, name=None, dn=dn, limit=1)
        if not found:
            raise BadRequestError(
                f"the LDAP directory has no group at {dn[:200]} (within ldap_group_search_filter)"
            )
        return found[0]

    async def unknown_ldap_group(self, dn: str) -> ldap.DirectoryGroup | None:
        """The directory's group at ``dn`` when no LDAP user group has that DN yet (so the
        caller creates it, as Harbor onboards a project member named by DN), else None;
        refused as ``ldap_group`` refuses."""
        dn = _group_dn(dn)
        async with self.db.read() as session:
            known = await users.find_group_by(
                session, group_type=LDAP_GROUP, ldap_dn_key=groupsync.dn_key(dn)
            )
        if known is not None:
            return None
        return await self.ldap_group(dn)

    async def onboard(self, found: ldap.DirectoryUser, *, groups: bool = True) -> AccountLogin:
        """The Dockyard user for a directory entry that signed in: created on the first
        sign-in (no password of its own: it can only sign in through the directory),
        its email and full name kept as the directory says. Without ``groups`` the
        login's group ids are left empty (a sign-in records and reads them next)."""
        try:
            name = validate_username(found.username, self.robot_prefix)
        except BadRequestError as exc:
            raise UnauthorizedError(
                f"the directory's name for this user cannot be a Dockyard user name: {exc}"
            ) from None
        email = found.email if 0 < len(found.email) <= 255 else None
        realname = found.realname[:255]
        async with self._lookups() as session:  # the usual case: nothing to change
            user = await users.find_user_by_name(session, name)
            if user is not None and user.realname == realname and email in (None, user.email):
                ids = await users.user_group_ids(session, user.user_id) if groups else frozenset()
                return users.user_login(user, ids)
        async with self.db.write() as session:
            if email is not None:
                holder = await users.find_user_by_email(session, email)
                if holder is not None and holder.username != name:
                    email = None  # another user has it: the sign-in still works
            if await users.find_user_by_name(session, name) is None:
                await session.execute(
                    insert_ignore(
                        session,
                        User,
                        {"username": name, "email": email, "realname": realname, "password": ""},
                        ["username"],
                    )
                )
            else:
                changes = {"realname": realname} | ({"email": email} if email else {})
                await session.execute(
                    update(User)
                    .where(User.username == name, User.deleted.is_(False))
                    .values(**changes)
                )
            login = await users.find_user_login(session, name, self.cli_secret_max_age_days)
        if login is None:  # deleted between the two statements
            raise UnauthorizedError(_BAD_CREDENTIALS)
        return login

    async def _proxy_login(
        self, cfg: authproxy.AuthProxyConfig, username: str, password: str, source: str
    ) -> AccountLogin:
        if username.startswith(authproxy.TOKEN_REVIEW_PREFIX):
            # Harbor's "tokenreview$<name>": the password is a token the proxy issued
            # (a Kubernetes service account's, say), reviewed as it is; it must name <name>.
            found = await self.proxy.review(cfg, password) if password else None
            if found is not None and found.username != username.removeprefix(
                authproxy.TOKEN_REVIEW_PREFIX
            ):
                found = None
        else:
            found = await self.proxy.authenticate(cfg, username, password)
        if found is None:
            await self._failed(username, source)
            raise UnauthorizedError(_BAD_CREDENTIALS)
        return await self.onboard_proxy_user(found)

    async def onboard_proxy_user(self, found: authproxy.ProxyUser) -> AccountLogin:
        """The Dockyard user the auth proxy's token review named, as Harbor onboards it:
        created on the first sign-in (realname the name, email the name when it is an
        address, no password of its own); its HTTP groups (``group_type`` 2) and its
        administrator role from ``http_authproxy_admin_*`` recorded as the review said,
        so the token service, the API and the console see the same."""
        try:
            name = validate_username(found.username, self.robot_prefix)
        except BadRequestError as exc:
            raise UnauthorizedError(
                f"the auth proxy's name for this user cannot be a Dockyard user name: {exc}"
            ) from None
        if name == ADMIN or await self.is_robot_name(name):
            raise UnauthorizedError(
                f"the auth proxy named the user {name}, an account that signs in only "
                "from the database"
            )
        async with self.db.read() as session:
            user = await users.find_user_by_name(session, name)
        if user is None:
            async with self.db.write() as session:
                await authproxy.insert_user(session, name)
                user = await users.find_user_by_name(session, name)
            if user is None:  # deleted between the two statements
                raise UnauthorizedError(_BAD_CREDENTIALS)
        # The groups and admin role as the review says, the way LDAP and OIDC record them
        # (a change that takes access away bumps the revocation counter there).
        group_ids = await groupsync.record_sign_in_groups(
            self.db,
            user.user_id,
            authproxy.GROUP_TYPE,
            [groupsync.ExternalGroup(name=group) for group in found.groups],
            admin=found.admin,
            onboard=True,
        )
        user.admin_role_in_auth = found.admin
        return users.user_login(user, group_ids)

    async def _failed(self, username: str, source: str) -> None:
        async with self.db.write() as session:
            await self.throttle.failed(session, username, source)

    async def robot_prefixes(
        self, session: AsyncSession, *, fresh: bool = False
    ) -> tuple[str, ...]:
        """Every prefix a robot's name may start with, longest first: the start-time
        setting, the run-time ``robot_name_prefix`` and each one a robot was created
        with. Read on every login, so cached for ``_PREFIXES_FRESH_SECONDS``."""
        now = time.monotonic()
        if fresh or now >= self._prefixes_until:
            known = await robots.known_prefixes(session, self.robot_prefix)
            self._prefixes = tuple(sorted(known, key=lambda p: (-len(p), p)))
            self._prefixes_until = now + _PREFIXES_FRESH_SECONDS
        return self._prefixes

    async def is_robot_name(self, name: str) -> bool:
        """Whether ``name`` starts with a robot name prefix (robots have no console)."""
        prefixes = self._prefixes
        if time.monotonic() >= self._prefixes_until:
            async with self._lookups() as session:
                prefixes = await self.robot_prefixes(session)
        return any(name.startswith(p) for p in prefixes)

    async def _find_login(self, session: AsyncSession, name: str) -> AccountLogin | None:
        """The robot or user ``name`` names. A robot is found by its full name, with
        the prefix it was created with: changing ``robot_name_prefix`` renames no
        robot, and ``<new prefix><old robot>`` is no account. A name that starts
        with a robot prefix is never a user's (user names cannot hold the prefix's
        ``$``, ``~`` or ``#``, nor start with the start-time prefix)."""
        login = await self._lookup(session, name, await self.robot_prefixes(session))
        if login is None:  # perhaps a prefix set on another node since the cache was read
            login = await self._lookup(
                session, name, await self.robot_prefixes(session, fresh=True)
            )
        return login

    async def _lookup(
        self, session: AsyncSession, name: str, prefixes: tuple[str, ...]
    ) -> AccountLogin | None:
        matched = [p for p in prefixes if name.startswith(p)]
        for prefix in matched:
            login = await robots.find_robot_login(
                session, name[len(prefix) :], prefix, self.robot_prefix
            )
            if login is not None:
                return login
        if matched:
            return None
        return await users.find_user_login(session, name, self.cli_secret_max_age_days)

    async def _find_account(self, name: str) -> AccountLogin | None:
        async with self._lookups() as session:
            return await self._find_login(session, name)

    @asynccontextmanager
    async def _lookups(self) -> AsyncIterator[AsyncSession]:
        """A session for a login's lookups with no transaction (``read_connection``):
        each statement stands alone. The throttle, the robot prefixes and the account
        need no common snapshot, and a login (or a token's recheck) is the one request
        of every push and pull that would otherwise open a read transaction for them."""
        async with (
            self.db.read_connection() as conn,
            AsyncSession(bind=conn, expire_on_commit=False) as session,
        ):
            yield session

    async def issue_refresh_token(self, principal: Principal) -> str:
        """A refresh token for ``principal``, tied to its current password or secret."""
        account = await self._find_account(principal.name)
        if account is None:
            raise UnauthorizedError("the account no longer exists")
        return self.tokens.issue_refresh(principal.name, account.credential_fingerprint)

    async def refresh_principal(self, refresh_token: str) -> Principal:
        """The account a refresh token names, if it may still log in with it."""
        subject, credential = self.tokens.verify_refresh(refresh_token)
        account = await self._find_account(subject)
        if account is None:
            raise UnauthorizedError("the refresh token's account no longer exists")
        if not hmac.compare_digest(account.credential_fingerprint, credential):
            raise UnauthorizedError(
                "the refresh token predates a password or secret change; log in again"
            )
        if account.refusal is not None:
            raise UnauthorizedError(account.refusal)
        return account.principal

    async def grant(self, principal: Principal, requested: list[Scope]) -> list[Scope]:
        """The part of ``requested`` that ``can`` allows; unknown types get nothing.

        Every repository scope is decided in one read, and each project is looked up
        once however many of its repositories are asked for (a cross-repository mount
        asks for two)."""
        # In the order asked: a decided scope, or the index of one still to decide.
        order: list[Scope | int] = []
        wanted: list[tuple[str, str, set[str]]] = []  # (scope name, repository, actions)
        for scope in requested:
            if scope.type == "registry" and scope.name == "catalog":
                if can(principal, Action.READ, Resource.CATALOG, None):
                    order.append(Scope("registry", "catalog", frozenset({"*"})))
                continue
            if scope.type != "repository":
                continue
            try:
                name = validate_repository_name(scope.name)
            except NameInvalidError:
                continue
            actions = {a for a in scope.actions if a in _REPOSITORY_ACTIONS}
            if "*" in scope.actions:
                actions = set(_REPOSITORY_ACTIONS)
            if actions:
                order.append(len(wanted))
                wanted.append((scope.name, name, actions))
        allowed = [actions for _, _, actions in wanted]
        if wanted and not principal.sysadmin:
            async with self._lookups() as session:
                contexts: dict[str, ProjectContext | None] = {}
                allowed = [
                    await self._allowed(session, principal, repository, actions, contexts)
                    for _, repository, actions in wanted
                ]
        granted: list[Scope] = []
        for entry in order:
            if isinstance(entry, Scope):
                granted.append(entry)
            elif allowed[entry]:
                granted.append(Scope("repository", wanted[entry][0], frozenset(allowed[entry])))
        return granted

    async def repository_actions(
        self, principal: Principal, repository: str, wanted: set[str]
    ) -> set[str]:
        """Which of the Docker actions ``wanted`` (pull, push, delete) ``can`` allows."""
        if not wanted or principal.sysadmin:
            return wanted
        async with self._lookups() as session:
            return await self._allowed(session, principal, repository, wanted, {})

    async def _allowed(
        self,
        session: AsyncSession,
        principal: Principal,
        repository: str,
        wanted: set[str],
        contexts: dict[str, ProjectContext | None],
    ) -> set[str]:
        """``repository_actions`` in ``session``; ``contexts`` keeps each project's
        context for the rest of the request."""
        if not wanted or principal.sysadmin:
            return wanted
        project_name, _ = split_repository(repository)
        if project_name in contexts:
            context = contexts[project_name]
        else:
            facts = await projects.find_project_facts(session, project_name)
            # A missing project grants nothing; the registry answers a push to it
            # with a clear error.
            context = (
                None if facts is None else await projects.project_context(session, principal, facts)
            )
            contexts[project_name] = context
        if context is None:
            return set()
        return {
            a
            for a in wanted
            if can(principal, _REPOSITORY_ACTIONS[a], Resource.REPOSITORY, context)
        }

    async def issue_token(
        self, principal: Principal, requested: list[Scope], account: AccountLogin | None = None
    ) -> IssuedToken:
        """A token for what ``principal`` may do of ``requested``. ``account`` is the
        account ``login`` just read for it (else it is read again, for the fingerprint
        of its password or secret)."""
        granted = await self.grant(principal, requested)
        ttl = await self._token_seconds()
        if principal.is_anonymous:
            return self.tokens.issue("", granted, principal.valid_until, ttl_seconds=ttl)
        if account is None or account.principal.name != principal.name:
            account = await self._find_account(principal.name)
        if account is None:
            raise UnauthorizedError("the account no longer exists")
        return self.tokens.issue(
            principal.name,
            granted,
            principal.valid_until,
            account.credential_fingerprint,
            ttl_seconds=ttl,
        )

    async def _token_seconds(self) -> int | None:
        """The run-time ``token_expiration`` in seconds (None: the start-time one), read
        at most every ``config.RUN_TIME_FRESH_SECONDS`` (``config.cached_run_time_value``)."""
        async with self.db.read_connection() as conn:
            minutes = await config.cached_run_time_value(
                conn, self._engine, config.TOKEN_EXPIRATION
            )
        return minutes * 60 if isinstance(minutes, int) else None

    # --- revocation: a token is only as good as the account and rights behind it ---

    async def recheck(
        self, claims: TokenClaims, repository: str | None, actions: tuple[str, ...]
    ) -> str | None:
        """Why a bearer token must be refused now, or None when it still holds.

        The token's account must still exist, be enabled, and have the password
        or secret the token was issued for; and its holder must still be allowed
        ``actions`` on ``repository`` (membership, robot permissions, project
        visibility). A token found to hold is remembered until a revocation moves
        the counter in ``iam/revocation.py``: at once in this process, within
        ``recheck_seconds`` in others. A refusal is decided again on each request:
        granting access moves no counter, so a remembered refusal would outlive a
        member added back.
        """
        revision = await self._revision()
        key = (claims.subject, claims.credential, repository, actions)
        if key in self._holding:
            return None
        decision = await self._decide(claims, repository, actions, revision)
        # Only "allowed" is remembered: granting access moves no counter, so a refusal
        # kept here would outlive a member added back or a robot enabled again.
        if not decision and self._revision_seen == revision:  # not across a revocation
            if len(self._holding) >= _DECISIONS_KEPT:
                self._holding.clear()
            self._holding.add(key)
        return decision or None

    async def _revision(self) -> int:
        local = revocation.local_revocations(self._engine)
        now = time.monotonic()
        if local == self._local_seen and now < self._revision_fresh_until:
            return self._revision_seen
        async with self.db.read_connection() as conn:
            current = await revocation.current(conn)
        self._local_seen = local
        self._revision_fresh_until = now + self.recheck_seconds
        if current != self._revision_seen:
            self._revision_seen = current
            self._holding.clear()
            self._accounts.clear()
        return current

    def _remember_account(self, key: tuple[str, str], principal: Principal, revision: int) -> None:
        """Keep an account found to hold, unless a revocation was seen since ``revision``."""
        if self._revision_seen != revision:
            return
        if len(self._accounts) >= _DECISIONS_KEPT:
            self._accounts.clear()
        self._accounts[key] = principal

    def _known_account(self, key: tuple[str, str]) -> Principal | None:
        principal = self._accounts.get(key)
        expires = None if principal is None else principal.valid_until
        if expires is not None and expires <= time.time():  # a robot expired since
            self._accounts.pop(key, None)
            return None
        return principal

    async def _decide(
        self,
        claims: TokenClaims,
        repository: str | None,
        actions: tuple[str, ...],
        revision: int,
    ) -> str:
        principal = ANONYMOUS
        if claims.subject:
            key = (claims.subject, claims.credential)
            known = self._known_account(key)
            if known is not None:
                principal = known
            else:
                account = await self._find_account(claims.subject)
                if account is None:
                    return f"the token's account {claims.subject} no longer exists"
                if claims.credential and not hmac.compare_digest(
                    account.credential_fingerprint, claims.credential
                ):
                    return "the token predates a password or secret change; request a new token"
                if account.refusal is not None:
                    return account.refusal
                principal = account.principal
                self._remember_account(key, principal, revision)
        if repository is None:
            if CATALOG in actions and not can(principal, Action.READ, Resource.CATALOG, None):
                return "the token's holder may no longer list the catalog"
            return ""
        allowed = await self.repository_actions(principal, repository, set(actions))
        missing = [a for a in actions if a not in allowed]
        if missing:
            return f"the token's holder may no longer {','.join(missing)} {repository}"
        return ""


def _group_dn(dn: str) -> str:
    """``dn`` without surrounding blanks, refused unless it is a valid DN."""
    dn = dn.strip()
    if not ldap.valid_dn(dn):
        raise BadRequestError("ldap_group_dn is not a valid DN (at most 512 characters)")
    return dn

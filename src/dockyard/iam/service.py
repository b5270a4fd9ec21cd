"""Identity: who is calling (Basic credentials) and what a token may grant them."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from dockyard.db.engine import Database
from dockyard.errors import NameInvalidError, TooManyRequestsError, UnauthorizedError
from dockyard.iam import repository as users
from dockyard.iam.accounts import AccountLogin
from dockyard.iam.passwords import verify_password
from dockyard.iam.policy import Action, Principal, Resource, can
from dockyard.iam.ratelimit import LoginThrottle
from dockyard.iam.tokens import IssuedToken, TokenAuthority
from dockyard.oci.names import split_repository, validate_repository_name
from dockyard.oci.scope import Scope
from dockyard.projects import service as projects
from dockyard.robots import service as robots
from dockyard.system import config

# Docker scope actions the token service may grant on a repository.
_REPOSITORY_ACTIONS = {"pull": Action.PULL, "push": Action.PUSH, "delete": Action.DELETE}
_VERIFIED_MEMO_SIZE = 4096
_BAD_CREDENTIALS = "invalid username or password"


class IdentityService:
    def __init__(
        self,
        db: Database,
        throttle: LoginThrottle,
        tokens: TokenAuthority,
        robot_prefix: str = "robot$",
    ) -> None:
        self.db = db
        self.throttle = throttle
        self.tokens = tokens
        self.robot_prefix = robot_prefix
        # A slow KDF on every Basic-authenticated registry request would cap
        # throughput at a few dozen requests a second; remember which secret
        # matched which stored hash, keyed by a MAC that never leaves this process.
        self._memo_key = secrets.token_bytes(32)
        self._verified: dict[bytes, str] = {}

    async def authenticate(self, username: str, password: str, source: str) -> Principal:
        """The principal for Basic credentials of a user or a robot.

        Failures say nothing of who exists. The slow hash check is skipped when
        this process verified the same secret against the same stored hash
        before; the account is read from the database every time, so a
        disabled robot, a changed password or a deleted user stops working at
        once on every node.
        """
        user_key, source_key = f"user:{username}", f"addr:{source}"
        wait = self.throttle.retry_after(user_key, source_key)
        if wait:
            raise TooManyRequestsError(
                f"too many failed logins; try again in {wait} seconds", retry_after=wait
            )
        async with self.db.read() as session:
            if username.startswith(self.robot_prefix):
                account = await robots.find_robot_login(
                    session, username[len(self.robot_prefix) :], self.robot_prefix
                )
            else:
                account = await users.find_user_login(session, username)
        if account is None:
            verify_password(None, password)  # the same time as for a real account
            self.throttle.failed(user_key, source_key)
            raise UnauthorizedError(_BAD_CREDENTIALS)
        memo = hmac.digest(self._memo_key, f"{username}\0{password}".encode(), hashlib.sha256)
        if not (
            account.stored_hash and self._verified.get(memo) == account.stored_hash
        ) and not account.verify(account.stored_hash, password):
            self.throttle.failed(user_key, source_key)
            raise UnauthorizedError(_BAD_CREDENTIALS)
        if len(self._verified) >= _VERIFIED_MEMO_SIZE:
            self._verified.clear()
        self._verified[memo] = account.stored_hash
        self.throttle.succeeded(user_key)
        if account.refusal is not None:
            raise UnauthorizedError(account.refusal)
        return account.principal

    async def _find_account(self, name: str) -> AccountLogin | None:
        async with self.db.read() as session:
            if name.startswith(self.robot_prefix):
                return await robots.find_robot_login(
                    session, name[len(self.robot_prefix) :], self.robot_prefix
                )
            return await users.find_user_login(session, name)

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
        """The part of ``requested`` that ``can`` allows; unknown types get nothing."""
        granted: list[Scope] = []
        for scope in requested:
            if scope.type == "registry" and scope.name == "catalog":
                if can(principal, Action.READ, Resource.CATALOG, None):
                    granted.append(Scope("registry", "catalog", frozenset({"*"})))
                continue
            if scope.type != "repository":
                continue
            actions = await self._repository_actions(principal, scope)
            if actions:
                granted.append(Scope("repository", scope.name, frozenset(actions)))
        return granted

    async def _repository_actions(self, principal: Principal, scope: Scope) -> set[str]:
        try:
            name = validate_repository_name(scope.name)
        except NameInvalidError:
            return set()
        wanted = {a for a in scope.actions if a in _REPOSITORY_ACTIONS}
        if "*" in scope.actions:
            wanted = set(_REPOSITORY_ACTIONS)
        return await self.repository_actions(principal, name, wanted)

    async def repository_actions(
        self, principal: Principal, repository: str, wanted: set[str]
    ) -> set[str]:
        """Which of the Docker actions ``wanted`` (pull, push, delete) ``can`` allows."""
        if not wanted or principal.sysadmin:
            return wanted
        project_name, _ = split_repository(repository)
        async with self.db.read() as session:
            facts = await projects.find_project_facts(session, project_name)
            if facts is None:
                # Only an administrator learns that the project is missing; the
                # registry answers its push with a clear error.
                return wanted if principal.sysadmin else set()
            context = await projects.project_context(session, principal, facts)
        return {
            a
            for a in wanted
            if can(principal, _REPOSITORY_ACTIONS[a], Resource.REPOSITORY, context)
        }

    async def issue_token(self, principal: Principal, requested: list[Scope]) -> IssuedToken:
        granted = await self.grant(principal, requested)
        async with self.db.read() as session:
            minutes = await config.run_time_value(session, config.TOKEN_EXPIRATION)
        return self.tokens.issue(
            principal.name if not principal.is_anonymous else "",
            granted,
            principal.valid_until,
            ttl_seconds=minutes * 60 if isinstance(minutes, int) else None,
        )

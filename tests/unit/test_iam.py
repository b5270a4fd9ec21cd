"""Pure identity parts: the policy table, tokens, login throttling, password hashing."""

from __future__ import annotations

import jwt
import pytest

from dockyard.errors import UnauthorizedError
from dockyard.iam.passwords import generate_password, hash_password, verify_password
from dockyard.iam.policy import (
    ANONYMOUS,
    ROLE_PERMISSIONS,
    Action,
    Principal,
    ProjectContext,
    Resource,
    Role,
    can,
)
from dockyard.iam.tokens import TokenAuthority, generate_signing_key
from dockyard.oci.scope import Scope

USER = Principal(kind="user", name="alice", user_id=7)
ADMIN = Principal(kind="user", name="root", user_id=1, sysadmin=True)

# The repository row of Harbor's table (shared/harbor-api/RBAC.md).
REPOSITORY_MATRIX = {
    Role.PROJECT_ADMIN: {"pull", "push", "delete"},
    Role.MAINTAINER: {"pull", "push", "delete"},
    Role.DEVELOPER: {"pull", "push"},
    Role.GUEST: {"pull"},
    Role.LIMITED_GUEST: {"pull"},
}


def _project(public: bool = False, roles: frozenset[Role] = frozenset()) -> ProjectContext:
    return ProjectContext(project_id=1, name="p", public=public, roles=roles)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", [Action.PULL, Action.PUSH, Action.DELETE])
def test_repository_matrix(role: Role, action: Action) -> None:
    allowed = can(USER, action, Resource.REPOSITORY, _project(roles=frozenset({role})))
    assert allowed == (action.value in REPOSITORY_MATRIX[role])


@pytest.mark.parametrize("action", list(Action))
def test_outsiders_and_anonymous(action: Action) -> None:
    public_ok = action in {Action.PULL, Action.READ, Action.LIST}
    assert can(ANONYMOUS, action, Resource.REPOSITORY, _project(public=True)) == public_ok
    assert can(USER, action, Resource.REPOSITORY, _project(public=True)) == public_ok
    assert not can(ANONYMOUS, action, Resource.REPOSITORY, _project())
    assert not can(USER, action, Resource.REPOSITORY, _project())
    assert can(ADMIN, action, Resource.REPOSITORY, _project())


def test_system_resources_are_for_admins() -> None:
    assert can(ADMIN, Action.LIST, Resource.CATALOG, None)
    assert not can(USER, Action.LIST, Resource.CATALOG, None)
    assert not can(ANONYMOUS, Action.LIST, Resource.CATALOG, None)


def test_every_role_has_a_row() -> None:
    assert set(ROLE_PERMISSIONS) == set(Role)


@pytest.fixture(scope="module")
def authority() -> TokenAuthority:
    return TokenAuthority(generate_signing_key(), issuer="iss", service="svc", ttl_seconds=60)


def test_token_round_trip(authority: TokenAuthority) -> None:
    issued = authority.issue("alice", [Scope("repository", "p/app", frozenset({"pull"}))])
    claims = authority.verify(issued.token)
    assert claims.subject == "alice"
    assert claims.allows("repository", "p/app", "pull")
    assert not claims.allows("repository", "p/app", "push")
    assert not claims.allows("repository", "p/other", "pull")
    header = jwt.get_unverified_header(issued.token)
    assert header["alg"] == "RS256" and header["kid"] == authority.key_id


def test_token_from_another_authority_is_refused(authority: TokenAuthority) -> None:
    other = TokenAuthority(generate_signing_key(), issuer="iss", service="svc", ttl_seconds=60)
    with pytest.raises(UnauthorizedError):
        authority.verify(other.issue("alice", []).token)


def test_refresh_tokens_are_not_access_tokens(authority: TokenAuthority) -> None:
    refresh = authority.issue_refresh("alice", "fp1")
    assert authority.verify_refresh(refresh) == ("alice", "fp1")
    with pytest.raises(UnauthorizedError):
        authority.verify(refresh)
    with pytest.raises(UnauthorizedError):
        authority.verify_refresh(authority.issue("alice", []).token)


def test_passwords() -> None:
    hashed = hash_password("S3cretPassword")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "S3cretPassword")
    assert not verify_password(hashed, "wrong")
    assert not verify_password(None, "anything")
    assert not verify_password("not-a-hash", "x")
    generated = generate_password()
    assert len(generated) == 20
    assert any(c.isupper() for c in generated) and any(c.isdigit() for c in generated)

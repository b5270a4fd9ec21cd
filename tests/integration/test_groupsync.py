"""``iam.groupsync.record_sign_in_groups``: the memberships an external sign-in records.

Runs on the suite's app (SQLite and PostgreSQL) with rows made for each test."""

from __future__ import annotations

import secrets

from sqlalchemy import select

from dockyard.http.state import AppState
from dockyard.iam import revocation
from dockyard.iam.groupsync import ExternalGroup, canonical_dn, dn_key, record_sign_in_groups
from dockyard.iam.models import User, UserGroup, UserGroupMembership

LDAP, OIDC = 1, 3


async def _user(state: AppState) -> int:
    name = f"sync-{secrets.token_hex(4)}"
    async with state.db.write() as session:
        user = User(username=name, email=f"{name}@example.org", realname=name, password="")
        session.add(user)
        await session.flush()
        return user.user_id


async def _group(state: AppState, name: str, kind: int, dn: str = "") -> int:
    async with state.db.write() as session:
        group = UserGroup(group_name=name, group_type=kind, ldap_group_dn=dn)
        session.add(group)
        await session.flush()
        return group.id


async def _memberships(state: AppState, user_id: int) -> set[int]:
    async with state.db.read() as session:
        rows = await session.scalars(
            select(UserGroupMembership.group_id).where(UserGroupMembership.user_id == user_id)
        )
        return set(rows)


async def _revision(state: AppState) -> int:
    async with state.db.read_connection() as conn:
        return await revocation.current(conn)


def test_dn_keys_forgive_case_and_spaces_but_not_escapes() -> None:
    assert dn_key("CN=Ops, OU=Groups ,dc=Example") == "cn=ops,ou=groups,dc=example"
    assert canonical_dn(" cn = Ops , ou=Groups") == "cn=Ops,ou=Groups"
    assert dn_key(r"cn=a\, b,ou=g") == r"cn=a\, b,ou=g"
    assert dn_key(r"cn=a\, b,ou=g") != dn_key("cn=a,b,ou=g")


async def test_ldap_groups_are_matched_by_dn_and_replaced_per_type(state: AppState) -> None:
    tag = secrets.token_hex(3)
    user = await _user(state)
    ops = await _group(state, f"ops-{tag}", LDAP, f"cn=Ops-{tag},ou=groups,dc=example,dc=org")
    dev = await _group(state, f"dev-{tag}", LDAP, f"cn=dev-{tag},ou=groups,dc=example,dc=org")
    oidc = await _group(state, f"oidc-{tag}", OIDC)
    async with state.db.write() as session:
        session.add(UserGroupMembership(user_id=user, group_id=oidc))

    # Another spelling of ops's DN; a DN with no group row is ignored (not created).
    groups = [
        ExternalGroup(f"ops-{tag}", f"CN=ops-{tag}, OU=Groups,dc=example,dc=org"),
        ExternalGroup("unknown", f"cn=unknown-{tag},ou=groups,dc=example,dc=org"),
    ]
    ids = await record_sign_in_groups(state.db, user, LDAP, groups)
    assert ids == {ops, oidc}
    assert await _memberships(state, user) == {ops, oidc}

    # Nothing changed: no revocation. Then dev replaces ops: the drop revokes.
    before = await _revision(state)
    assert await record_sign_in_groups(state.db, user, LDAP, groups) == {ops, oidc}
    assert await _revision(state) == before
    moved = [ExternalGroup(f"dev-{tag}", f"cn=dev-{tag},ou=groups,dc=example,dc=org")]
    assert await record_sign_in_groups(state.db, user, LDAP, moved) == {dev, oidc}
    assert await _revision(state) > before
    # OIDC's memberships are OIDC's sign-in's business: an LDAP one with none keeps it.
    assert await record_sign_in_groups(state.db, user, LDAP, []) == {oidc}
    async with state.db.read() as session:
        unknown = await session.scalar(
            select(UserGroup).where(UserGroup.group_name == "unknown", UserGroup.group_type == 1)
        )
    assert unknown is None


async def test_onboarding_creates_missing_groups_by_name_but_never_merges(
    state: AppState,
) -> None:
    tag = secrets.token_hex(3)
    user = await _user(state)
    taken = await _group(state, f"taken-{tag}", LDAP, f"cn=taken-{tag},ou=a,dc=example,dc=org")
    groups = [
        ExternalGroup(f"new-{tag}"),
        ExternalGroup(f"new-{tag}"),  # twice: one row
        ExternalGroup(f"other-{tag}"),
    ]
    ids = await record_sign_in_groups(state.db, user, OIDC, groups, onboard=True)
    async with state.db.read() as session:
        made = dict(
            (
                await session.execute(
                    select(UserGroup.group_name, UserGroup.id).where(UserGroup.group_type == OIDC)
                )
            ).all()
        )
    assert ids == {made[f"new-{tag}"], made[f"other-{tag}"]}
    # An LDAP group whose name another DN holds is not made, nor joined.
    clash = [ExternalGroup(f"taken-{tag}", f"cn=taken-{tag},ou=b,dc=example,dc=org")]
    assert taken not in await record_sign_in_groups(state.db, user, LDAP, clash, onboard=True)


async def test_the_admin_role_follows_the_provider(state: AppState) -> None:
    user = await _user(state)

    async def admin_role() -> bool:
        async with state.db.read() as session:
            return bool(
                await session.scalar(select(User.admin_role_in_auth).where(User.user_id == user))
            )

    await record_sign_in_groups(state.db, user, LDAP, [], admin=True)
    assert await admin_role()
    before = await _revision(state)
    await record_sign_in_groups(state.db, user, LDAP, [])  # None: left as it is
    assert await admin_role()
    await record_sign_in_groups(state.db, user, LDAP, [], admin=False)
    assert not await admin_role()
    assert await _revision(state) > before

"""Record, at each sign-in, the groups an identity provider says a user is in.

``record_sign_in_groups`` is the one place where an external sign-in (LDAP now; OIDC and
the HTTP auth proxy reuse it) writes the ``user_group_membership`` rows that ``can()``
reads through ``Principal.group_ids``, and the user's ``admin_role_in_auth`` (an
administrator because the provider's admin group holds them). It replaces the user's
memberships *of one group type* with the ones given, and leaves the other types alone.

Groups are matched to ``user_group`` rows of that type: by DN where one is given (LDAP:
compared case-insensitively, as directories compare ``cn``/``ou``/``dc`` values), else by
name. Groups with no row are skipped, unless ``onboard`` asks to create them (as Harbor
does for OIDC groups); a name another group of the type already holds is skipped then
too, never merged.

A sign-in that changes nothing reads and writes nothing more than one read transaction;
a change is made in one write transaction, and one that takes access away (a membership
dropped, the admin role lost) bumps the revocation counter so older tokens stop holding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.engine import Database, insert_ignore
from dockyard.iam import revocation
from dockyard.iam.models import User, UserGroup, UserGroupMembership

MAX_GROUPS = 1000
"""Groups recorded for one user at most (a provider that names more is cut here)."""
_CHUNK = 200
"""Values per ``IN`` list (SQLite's and asyncpg's limits are far above)."""


@dataclass(frozen=True, slots=True)
class ExternalGroup:
    """A group as the provider names it: ``dn`` for LDAP groups (the key), else ``""``."""

    name: str
    dn: str = ""


def canonical_dn(dn: str) -> str:
    """``dn`` without spaces around its ``,`` and ``=`` (escaped characters such as
    ``\\,`` kept as they are): the form LDAP group DNs are stored in."""
    if not dn.strip():
        return ""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in dn.strip():
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            current.append(ch)
            escaped = True
        elif ch in ",;":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    rdns = []
    for part in parts:
        attribute, _, value = part.partition("=")
        rdns.append(f"{attribute.strip()}={value.strip()}")
    return ",".join(rdns)


def dn_key(dn: str) -> str:
    """The form two spellings of one DN share: canonical and lower-cased
    (``CN=Ops, OU=Groups`` and ``cn=ops,ou=groups`` are one group)."""
    return canonical_dn(dn).lower()


@dataclass(frozen=True, slots=True)
class _Plan:
    matched: frozenset[int]
    current: frozenset[int]
    """The user's groups of the type being recorded."""
    all_ids: frozenset[int]
    """The user's groups of every type."""
    missing: tuple[ExternalGroup, ...]
    admin_now: bool

    def changes(self, admin: bool | None) -> bool:
        return (
            self.matched != self.current
            or bool(self.missing)
            or (admin is not None and admin != self.admin_now)
        )


async def record_sign_in_groups(
    db: Database,
    user_id: int,
    group_type: int,
    groups: Iterable[ExternalGroup],
    *,
    admin: bool | None = None,
    onboard: bool = False,
) -> frozenset[int]:
    """Make ``groups`` the user's memberships of ``group_type`` and, unless ``admin`` is
    None, set ``admin_role_in_auth`` to it. Returns the ids of every group the user is
    now in (all types), for the principal of this sign-in."""
    wanted = _distinct(groups)
    # The first look needs no snapshot (a change is planned again, in the write): plain
    # statements on a connection, as every sign-in makes it.
    async with (
        db.read_connection() as conn,
        AsyncSession(bind=conn, expire_on_commit=False) as session,
    ):
        plan = await _plan(session, user_id, group_type, wanted, onboard)
        if not plan.changes(admin):
            return plan.all_ids
    async with db.write() as session:
        plan = await _plan(session, user_id, group_type, wanted, onboard)  # afresh, locked
        matched = set(plan.matched)
        if plan.missing:
            await session.execute(
                insert_ignore(
                    session,
                    UserGroup,
                    [
                        {
                            "group_name": g.name,
                            "group_type": group_type,
                            "ldap_group_dn": canonical_dn(g.dn),
                        }
                        for g in plan.missing
                    ],
                    ["group_type", "group_name"],
                )
            )
            # Rows made now (or by a sign-in racing this one); a name held by another DN
            # stays someone else's group.
            matched |= (await _match(session, group_type, plan.missing))[0]
        added = matched - plan.current
        dropped = plan.current - matched
        if added:
            await session.execute(
                insert_ignore(
                    session,
                    UserGroupMembership,
                    [{"user_id": user_id, "group_id": g} for g in sorted(added)],
                    ["user_id", "group_id"],
                )
            )
        if dropped:
            await session.execute(
                delete(UserGroupMembership).where(
                    UserGroupMembership.user_id == user_id,
                    UserGroupMembership.group_id.in_(sorted(dropped)),
                )
            )
        demoted = admin is False and plan.admin_now
        if admin is not None and admin != plan.admin_now:
            await session.execute(
                update(User).where(User.user_id == user_id).values(admin_role_in_auth=admin)
            )
        if dropped or demoted:
            await revocation.bump(session)  # tokens from before this change stop holding
        return await _all_group_ids(session, user_id)


def _distinct(groups: Iterable[ExternalGroup]) -> tuple[ExternalGroup, ...]:
    seen: dict[str, ExternalGroup] = {}
    for group in groups:
        key = dn_key(group.dn) if group.dn else group.name
        if key and key not in seen:
            seen[key] = group
        if len(seen) >= MAX_GROUPS:
            break
    return tuple(seen.values())


async def _plan(
    session: AsyncSession,
    user_id: int,
    group_type: int,
    wanted: Sequence[ExternalGroup],
    onboard: bool,
) -> _Plan:
    matched, keys = await _match(session, group_type, wanted)
    missing: tuple[ExternalGroup, ...] = ()
    if onboard:
        taken = await _taken_names(session, group_type, [g.name for g in wanted])
        missing = tuple(
            g
            for g in wanted
            if g.name and g.name not in taken and (not g.dn or dn_key(g.dn) not in keys)
        )
    # The user's admin role and memberships in one statement (a row per membership).
    rows = (
        await session.execute(
            select(User.admin_role_in_auth, UserGroupMembership.group_id, UserGroup.group_type)
            .select_from(User)
            .outerjoin(UserGroupMembership, UserGroupMembership.user_id == User.user_id)
            .outerjoin(UserGroup, UserGroup.id == UserGroupMembership.group_id)
            .where(User.user_id == user_id)
        )
    ).all()
    memberships = [(g, kind) for _, g, kind in rows if g is not None]
    return _Plan(
        frozenset(matched),
        frozenset(g for g, kind in memberships if kind == group_type),
        frozenset(g for g, _ in memberships),
        missing,
        any(bool(admin) for admin, _, _ in rows),
    )


async def _match(
    session: AsyncSession, group_type: int, wanted: Sequence[ExternalGroup]
) -> tuple[set[int], set[str]]:
    """Ids of the ``user_group`` rows of ``group_type`` that ``wanted`` names, and the
    DN keys that found one."""
    found: set[int] = set()
    keys: set[str] = set()
    by_dn = sorted({dn_key(g.dn) for g in wanted if g.dn})
    by_name = sorted({g.name for g in wanted if not g.dn and g.name})
    for chunk in _chunks(by_dn):
        rows = await session.execute(
            select(UserGroup.id, UserGroup.ldap_group_dn).where(
                UserGroup.group_type == group_type,
                func.lower(UserGroup.ldap_group_dn).in_(chunk),
            )
        )
        for group_id, dn in rows.all():
            found.add(group_id)
            keys.add(dn_key(dn))
    for chunk in _chunks(by_name):
        rows = await session.execute(
            select(UserGroup.id).where(
                UserGroup.group_type == group_type,
                UserGroup.group_name.in_(chunk),
                UserGroup.ldap_group_dn == "",
            )
        )
        found.update(rows.scalars())
    return found, keys


async def _taken_names(session: AsyncSession, group_type: int, names: Sequence[str]) -> set[str]:
    taken: set[str] = set()
    for chunk in _chunks(sorted({n for n in names if n})):
        rows = await session.execute(
            select(UserGroup.group_name).where(
                UserGroup.group_type == group_type, UserGroup.group_name.in_(chunk)
            )
        )
        taken.update(rows.scalars())
    return taken


async def _all_group_ids(session: AsyncSession, user_id: int) -> frozenset[int]:
    rows = await session.execute(
        select(UserGroupMembership.group_id).where(UserGroupMembership.user_id == user_id)
    )
    return frozenset(rows.scalars())


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]

"""Pure robot rules: names, secrets, lifetimes, the permission catalogue, robot principals."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.errors import BadRequestError
from dockyard.iam.policy import (
    ROBOT_PROJECT_PERMISSIONS,
    ROBOT_SYSTEM_PERMISSIONS,
    Action,
    ProjectContext,
    Resource,
    can,
)
from dockyard.robots.models import Robot, RobotPermission
from dockyard.robots.permissions import (
    DEFAULT_DURATION_DAYS,
    SECONDS_PER_DAY,
    UNSUPPORTED_RESOURCES,
    Requested,
    check_duration,
    check_level,
    check_robot_name,
    check_secret,
    expires_at,
    generate_secret,
    grantable,
    is_expired,
    parse_permissions,
    shown_permissions,
    stored_name,
)
from dockyard.robots.schemas import RobotPermission as PermissionBody
from dockyard.robots.service import robot_principal


def _entry(kind: str | None, namespace: str | None, *pairs: str, **access: Any) -> PermissionBody:
    return PermissionBody.model_validate(
        {
            "kind": kind,
            "namespace": namespace,
            "access": [
                {"resource": p.split(":")[0], "action": p.split(":")[1], **access} for p in pairs
            ],
        }
    )


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "ci", "ci-bot", "ci.bot_2", "0", "a" * 255])
def test_good_names(name: str) -> None:
    assert check_robot_name(name) == name


@pytest.mark.parametrize(
    "name",
    [None, "", "CI", "a+b", "robot$x", "-a", "a-", "a..b", "a b", "a/b", "é", "a\n", "a" * 256],
)
def test_bad_names(name: str | None) -> None:
    with pytest.raises(BadRequestError):
        check_robot_name(name)


def test_stored_names() -> None:
    assert stored_name("system", "ci", None) == "ci"
    assert stored_name("project", "ci", "proj") == "proj+ci"
    with pytest.raises(BadRequestError):
        stored_name("project", "a" * 200, "p" * 60)


# --- secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["Abcdefg1", "Chosen-Secret-42", "A1" + "b" * 126])
def test_secrets_that_meet_the_policy(secret: str) -> None:
    assert check_secret(secret) == secret


@pytest.mark.parametrize(
    "secret", ["Abcdef1", "abcdefg1", "ABCDEFG1", "Abcdefgh", "A1" + "b" * 127, ""]
)
def test_secrets_that_do_not(secret: str) -> None:
    with pytest.raises(BadRequestError):
        check_secret(secret)


def test_generated_secrets_are_long_random_and_valid() -> None:
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert len(secret) >= 32
        assert check_secret(secret) == secret


# --- lifetime ----------------------------------------------------------------------------------


def test_durations() -> None:
    assert check_duration(None) == DEFAULT_DURATION_DAYS == 30
    assert check_duration(0) == 30
    assert check_duration(-1) == -1
    assert check_duration(7) == 7
    for bad in (-2, -100, 2**31):
        with pytest.raises(BadRequestError):
            check_duration(bad)


def test_expiry() -> None:
    assert expires_at(1000, -1) == -1
    assert expires_at(1000, 2) == 1000 + 2 * SECONDS_PER_DAY
    assert not is_expired(-1, 10**12)
    assert not is_expired(2000, 1999.5)
    assert is_expired(2000, 2000)
    assert is_expired(2000, 2001)


# --- permissions -------------------------------------------------------------------------------


def test_levels() -> None:
    assert check_level("system") == "system"
    assert check_level("project") == "project"
    for bad in (None, "", "System", "global"):
        with pytest.raises(BadRequestError):
            check_level(bad)


def test_project_robot_permissions_parse_and_dedupe() -> None:
    requested = parse_permissions(
        "project",
        [_entry("project", "p", "repository:pull", "repository:push", "repository:pull")],
    )
    assert requested == [
        Requested("project", "p", Resource.REPOSITORY, Action.PULL),
        Requested("project", "p", Resource.REPOSITORY, Action.PUSH),
    ]


def test_system_robot_may_mix_system_projects_and_all() -> None:
    requested = parse_permissions(
        "system",
        [
            _entry("system", "/", "catalog:read"),
            _entry("project", "a", "repository:pull"),
            _entry("project", "*", "artifact:read", effect="allow"),
        ],
    )
    assert {(r.kind, r.namespace) for r in requested} == {
        ("system", "/"),
        ("project", "a"),
        ("project", "*"),
    }


@pytest.mark.parametrize(
    ("level", "entries"),
    [
        ("project", []),
        ("project", None),
        (
            "project",
            [_entry("project", "a", "repository:pull"), _entry("project", "b", "tag:list")],
        ),
        ("project", [_entry("system", "/", "catalog:read")]),
        ("project", [_entry("project", "*", "repository:pull")]),
        ("system", [_entry("system", "library", "catalog:read")]),
        ("system", [_entry("system", None, "catalog:read")]),
        ("system", [_entry("foo", "/", "catalog:read")]),
        ("system", [_entry(None, "/", "catalog:read")]),
        ("system", [_entry("project", "/", "repository:pull")]),
        ("system", [_entry("project", "", "repository:pull")]),
        ("system", [_entry("project", "a")]),
        ("system", [_entry("system", "/", "repository:pull")]),  # project resource
        ("system", [_entry("project", "a", "catalog:read")]),  # system resource
        ("system", [_entry("project", "a", "repository:create")]),  # not in the catalogue
        ("system", [_entry("project", "a", "repository:*")]),
        ("system", [_entry("project", "a", "*:pull")]),
        ("system", [_entry("project", "a", "repository:pull", effect="deny")]),
        ("system", [_entry("project", "a", "rocket:launch")]),
    ],
)
def test_refused_permissions(level: str, entries: list[PermissionBody] | None) -> None:
    with pytest.raises(BadRequestError):
        parse_permissions(check_level(level), entries)


def test_missing_resource_or_action_is_refused() -> None:
    body = PermissionBody.model_validate(
        {"kind": "project", "namespace": "a", "access": [{"resource": "repository"}]}
    )
    with pytest.raises(BadRequestError):
        parse_permissions("system", [body])


@pytest.mark.parametrize(
    ("catalogue", "kind", "namespace"),
    [(ROBOT_SYSTEM_PERMISSIONS, "system", "/"), (ROBOT_PROJECT_PERMISSIONS, "project", "p")],
)
def test_the_whole_catalogue_is_grantable_but_missing_features(
    catalogue: dict[Resource, frozenset[Action]], kind: str, namespace: str
) -> None:
    pairs = [f"{r.value}:{a.value}" for r, actions in grantable(catalogue).items() for a in actions]
    requested = parse_permissions("system", [_entry(kind, namespace, *pairs)])
    assert len(requested) == len(pairs)
    missing = [r for r in catalogue if r in UNSUPPORTED_RESOURCES]
    assert missing  # scanning, SBOM and preheat resources are in both catalogues
    for resource in missing:
        action = sorted(catalogue[resource])[0]
        with pytest.raises(BadRequestError, match="not supported by Dockyard yet"):
            parse_permissions("system", [_entry(kind, namespace, f"{resource}:{action}")])


def test_shown_permissions_group_by_kind_and_namespace() -> None:
    shown = shown_permissions(
        [
            ("project", "a", "repository", "pull", "allow"),
            ("system", "/", "catalog", "read", "allow"),
            ("project", "a", "repository", "push", "allow"),
        ]
    )
    assert [p.model_dump() for p in shown] == [
        {
            "kind": "project",
            "namespace": "a",
            "access": [
                {"resource": "repository", "action": "pull", "effect": "allow"},
                {"resource": "repository", "action": "push", "effect": "allow"},
            ],
        },
        {
            "kind": "system",
            "namespace": "/",
            "access": [{"resource": "catalog", "action": "read", "effect": "allow"}],
        },
    ]


# --- the principal a robot logs in as ----------------------------------------------------------


def _row(scope: str, resource: str, action: str) -> RobotPermission:
    return RobotPermission(
        kind="project", namespace="x", scope=scope, resource=resource, action=action
    )


def test_robot_principal_holds_exactly_its_grants() -> None:
    robot = Robot(id=9, name="p+ci", level="project", project_id=3)
    principal = robot_principal(
        robot,
        [
            _row("/project/3", "repository", "pull"),
            _row("/project/3", "repository", "push"),
            _row("/project/*", "artifact", "read"),
            _row("/system", "catalog", "read"),
            _row("/project/3", "no-longer-a-resource", "pull"),
        ],
        "robot$",
    )
    assert principal.kind == "robot"
    assert principal.name == "robot$p+ci"
    assert principal.robot_id == 9
    assert principal.user_id is None and not principal.sysadmin
    assert len(principal.grants) == 4
    mine = ProjectContext(project_id=3, name="p", public=False)
    other = ProjectContext(project_id=4, name="o", public=False)
    assert can(principal, Action.PUSH, Resource.REPOSITORY, mine)
    assert not can(principal, Action.DELETE, Resource.REPOSITORY, mine)
    assert not can(principal, Action.PULL, Resource.REPOSITORY, other)
    assert can(principal, Action.READ, Resource.ARTIFACT, other)
    assert can(principal, Action.READ, Resource.CATALOG, None)
    assert not can(principal, Action.CREATE, Resource.ROBOT, None)

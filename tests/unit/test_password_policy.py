"""Harbor's rules for passwords, user names, e-mail and profile text (pure code)."""

from __future__ import annotations

import pytest

from dockyard.errors import BadRequestError
from dockyard.iam import users
from dockyard.iam.passwords import generate_password
from dockyard.iam.policy import ROLE_PERMISSIONS, Action, Resource

ROBOT_PREFIX = "robot$"


@pytest.mark.parametrize(
    "password",
    ["Passw0rd", "aB3" + "x" * 125, "Ünïcode1A", "with spaces 1A", "P@ssw0rd!#$%"],
)
def test_acceptable_passwords(password: str) -> None:
    assert users.password_problem(password) is None
    assert users.validate_password(password) == password


@pytest.mark.parametrize(
    ("password", "why"),
    [
        (None, "8 to 128"),
        ("", "8 to 128"),
        ("Pa55wor", "8 to 128"),
        ("aB3" + "x" * 126, "8 to 128"),
        ("password1", "upper-case"),
        ("PASSWORD1", "upper-case"),
        ("Passwordd", "upper-case"),
        ("ÄÖÜäöüßé1", "upper-case"),  # Harbor's classes are ASCII letters
        ("Passw0rd\x00", "control"),
        ("Passw0rd\n", "control"),
    ],
)
def test_refused_passwords(password: str | None, why: str) -> None:
    problem = users.password_problem(password)
    assert problem is not None and why in problem
    with pytest.raises(BadRequestError):
        users.validate_password(password)


def test_generated_passwords_meet_the_policy() -> None:
    for _ in range(50):
        assert users.password_problem(generate_password()) is None


@pytest.mark.parametrize("name", ["alice", "a", "x" * 255, "o'brien", "名前", "a.b-c_d@e"])
def test_acceptable_usernames(name: str) -> None:
    assert users.validate_username(name, ROBOT_PREFIX) == name


@pytest.mark.parametrize(
    "name",
    [
        None,
        "",
        "x" * 256,
        "a,b",
        "a~b",
        "a#b",
        "a$b",
        "a%b",
        " alice",
        "alice ",
        "ali\tce",
        "ali\x00ce",
        "ali\x7fce",
        "robot$ci",
        "\ud800",
    ],
)
def test_refused_usernames(name: str | None) -> None:
    with pytest.raises(BadRequestError):
        users.validate_username(name, ROBOT_PREFIX)


def test_another_robot_prefix_is_honoured() -> None:
    assert users.validate_username("bot_ci", ROBOT_PREFIX) == "bot_ci"
    with pytest.raises(BadRequestError):
        users.validate_username("bot_ci", "bot_")


@pytest.mark.parametrize(
    "email", ["a@example.com", "first.last+tag@sub.example.co", "x@a-b.io", "Ä@example.de"]
)
def test_acceptable_emails(email: str) -> None:
    assert users.validate_email(email) == email


@pytest.mark.parametrize(
    "email",
    [
        None,
        "",
        "plain",
        "a@b",
        "a@b.c",
        "a b@example.com",
        "a@exa mple.com",
        "a@@example.com",
        ".a@example.com",
        "a..b@example.com",
        "a@-example.com",
        "a@example.123",
        "a@example.com\n",
        "x" * 250 + "@example.com",
    ],
)
def test_refused_emails(email: str | None) -> None:
    with pytest.raises(BadRequestError):
        users.validate_email(email)


def test_realname_and_comment_rules() -> None:
    assert users.validate_realname("Ada Lovelace") == "Ada Lovelace"
    for bad in (None, "", "a,b", "100%", "x" * 256, "a\x00"):
        with pytest.raises(BadRequestError):
            users.validate_realname(bad)
    assert users.validate_comment(None) == ""
    assert users.validate_comment("c" * 30) == "c" * 30
    with pytest.raises(BadRequestError):
        users.validate_comment("c" * 31)


def test_deleted_names_keep_within_the_column() -> None:
    assert users._deleted_name("alice", 7) == "alice#7"
    long = users._deleted_name("x" * 255, 123456)
    assert len(long) == 255 and long.endswith("#123456")


def test_project_catalogue_is_exactly_the_role_permissions() -> None:
    union = {
        (resource, action)
        for table in ROLE_PERMISSIONS.values()
        for resource, actions in table.items()
        for action in actions
    }
    assert set(users._PROJECT_CATALOGUE) == union
    assert len(users._PROJECT_CATALOGUE) == len(union)
    assert (Resource.REPOSITORY, Action.PUSH) in union

"""Docker token-auth scope strings."""

from __future__ import annotations

import pytest

from dockyard.oci.scope import Scope, format_challenge_scope, parse_scope, parse_scopes


def scope(type_: str, name: str, *actions: str) -> Scope:
    return Scope(type=type_, name=name, actions=frozenset(actions))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("repository:library/nginx:pull", scope("repository", "library/nginx", "pull")),
        (
            "repository:library/nginx:pull,push",
            scope("repository", "library/nginx", "pull", "push"),
        ),
        (
            "repository:library/nginx:push,pull",
            scope("repository", "library/nginx", "pull", "push"),
        ),
        ("repository:p/a:pull,push,delete", scope("repository", "p/a", "pull", "push", "delete")),
        ("repository:p/a:*", scope("repository", "p/a", "*")),
        ("registry:catalog:*", scope("registry", "catalog", "*")),
        # A name with a host and port keeps its colon.
        (
            "repository:localhost:5000/library/nginx:pull",
            scope("repository", "localhost:5000/library/nginx", "pull"),
        ),
        ("repository:a:b:c:pull", scope("repository", "a:b:c", "pull")),
        # The resource class is dropped.
        ("repository(plugin):vieux/sshfs:pull", scope("repository", "vieux/sshfs", "pull")),
        ("repository(image):p/a:push", scope("repository", "p/a", "push")),
        # Empty actions are dropped; no actions at all is still a scope.
        ("repository:p/a:pull,,push,", scope("repository", "p/a", "pull", "push")),
        ("repository:p/a:,pull", scope("repository", "p/a", "pull")),
        ("repository:p/a:", scope("repository", "p/a")),
        ("repository:p/a:,,,", scope("repository", "p/a")),
        ("repository:p/a:pull,pull", scope("repository", "p/a", "pull")),
        # Surrounding whitespace is tolerated.
        ("  repository:p/a:pull\n", scope("repository", "p/a", "pull")),
    ],
)
def test_parse_scope(value: str, expected: Scope) -> None:
    assert parse_scope(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "repository",
        "repository:p/a",
        "repository:pull",
        ":p/a:pull",
        "repository::pull",
        "::",
        ":::",
        "Repository:p/a:pull",
        "repo_sitory:p/a:pull",
        "repository(:p/a:pull",
        "repository(plugin:p/a:pull",
        "repository()",
        "repository():p/a:pull",
        "repository(Plugin):p/a:pull",
        "repository(a)(b):p/a:pull",
        "repository:p/a:pull push",
        "repository:p/a b:pull",
        "repository:p/a:pull\x00",
        "repository:p/\x00a:pull",
        "repository:p/a\t:pull",
        "repository:p/é:pull",
        "repository:p/a:pull\u200b",
        "x" * 10 + "\x7f" + ":a:b",
    ],
)
def test_parse_scope_malformed(value: str) -> None:
    assert parse_scope(value) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (scope("repository", "p/a", "push", "pull"), "repository:p/a:pull,push"),
        (scope("repository", "p/a"), "repository:p/a:"),
        (scope("registry", "catalog", "*"), "registry:catalog:*"),
        (
            scope("repository", "localhost:5000/p/a", "pull"),
            "repository:localhost:5000/p/a:pull",
        ),
    ],
)
def test_str(value: Scope, text: str) -> None:
    assert str(value) == text
    assert parse_scope(text) == value


def test_parse_scopes_merges_and_splits() -> None:
    values = [
        "repository:p/a:pull",
        "repository:p/b:pull repository:p/a:push",  # containerd: one value, many scopes
        "repository:p/a:pull,delete",
        "garbage",
        "",
        "registry:catalog:*",
    ]
    assert parse_scopes(values) == [
        scope("repository", "p/a", "pull", "push", "delete"),
        scope("repository", "p/b", "pull"),
        scope("registry", "catalog", "*"),
    ]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], []),
        ([""], []),
        (["  \t "], []),
        (["nonsense", "a:b"], []),
        (
            ["repository:p/a:pull\trepository:p/b:push"],
            [
                scope("repository", "p/a", "pull"),
                scope("repository", "p/b", "push"),
            ],
        ),
        (
            ["repository(plugin):p/a:pull", "repository:p/a:push"],
            [
                scope("repository", "p/a", "pull", "push"),
            ],
        ),
        (
            ["registry:catalog:*", "repository:catalog:pull"],
            [
                scope("registry", "catalog", "*"),
                scope("repository", "catalog", "pull"),
            ],
        ),
        (["repository:p/a:", "repository:p/a:pull"], [scope("repository", "p/a", "pull")]),
    ],
)
def test_parse_scopes(values: list[str], expected: list[Scope]) -> None:
    assert parse_scopes(values) == expected


def test_parse_scopes_accepts_any_iterable() -> None:
    assert parse_scopes(v for v in ["repository:p/a:pull"]) == [scope("repository", "p/a", "pull")]


@pytest.mark.parametrize(
    ("name", "actions", "expected"),
    [
        ("library/nginx", ["pull", "push"], "repository:library/nginx:pull,push"),
        ("library/nginx", ["push", "pull"], "repository:library/nginx:pull,push"),
        ("library/nginx", ("pull",), "repository:library/nginx:pull"),
        ("library/nginx", ["pull", "pull"], "repository:library/nginx:pull"),
        ("p/a", ["delete"], "repository:p/a:delete"),
        ("p/a", iter(["pull", "push", "delete"]), "repository:p/a:delete,pull,push"),
    ],
)
def test_format_challenge_scope(name: str, actions: list[str], expected: str) -> None:
    assert format_challenge_scope(name, actions) == expected

"""Repository, tag and project name rules."""

from __future__ import annotations

import pytest

from dockyard.errors import NameInvalidError, TagInvalidError
from dockyard.oci.names import (
    MAX_NAME_LENGTH,
    split_repository,
    validate_project_name,
    validate_repository_name,
    validate_tag,
)

# --- repository names --------------------------------------------------------

VALID_REPOSITORIES = [
    "library/nginx",
    "a/b",
    "0/0",
    "library/ubuntu/focal",
    "my-project/my-app",
    "my.project/app.v2",
    "proj/a__b",
    "proj/a_b",
    "proj/a---b",
    "proj/a.b-c_d__e",
    "proj/deep/er/than/you/think",
    "p/" + "a" * (MAX_NAME_LENGTH - 2),
    ("a/" * 127) + "b",  # 255 characters, 128 components
]


@pytest.mark.parametrize("name", VALID_REPOSITORIES)
def test_valid_repository_names(name: str) -> None:
    assert validate_repository_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("nginx", r"must start with a project: <project>/<name>"),
        ("library", "must start with a project"),
        ("Library/nginx", "uppercase letters are not allowed"),
        ("library/Nginx", "uppercase letters are not allowed"),
        ("../x", "'..' is not allowed"),
        ("a/../b", "'..' is not allowed"),
        ("a/b/..", "'..' is not allowed"),
        ("..", "'..' is not allowed"),
        ("./a", "'.' is not allowed"),
        ("a/./b", "'.' is not allowed"),
        ("%2e%2e/x", "percent-encoded"),
        ("a/%2e%2e", "percent-encoded"),
        ("a%2fb", "percent-encoded"),
        ("a//b", "empty path component"),
        ("a/b//c", "empty path component"),
        ("/a", "must not start with '/'"),
        ("/a/b", "must not start with '/'"),
        ("a/", "must not end with '/'"),
        ("a/b/", "must not end with '/'"),
        ("/", "must not start with '/'"),
        ("p/" + "a" * (MAX_NAME_LENGTH - 1), "256 characters long; the limit is 255"),
        ("p/" + "a" * 100_000, "the limit is 255"),
        ("proj/café", "only ASCII"),
        ("proj/ｎginx", "only ASCII"),  # fullwidth n
        ("proj/nginx\u200b", "invisible characters"),  # zero-width space
        ("proj/\u0430pp", "only ASCII"),  # Cyrillic a
        ("proj/a\x00b", "NUL"),
        ("proj/a b", "whitespace"),
        ("proj/a\tb", "whitespace"),
        ("proj/nginx\n", "whitespace"),
        ("proj/\u3000x", "whitespace"),
        (" proj/nginx", "whitespace"),
        ("proj/a\x7fb", "control or invisible"),
        ("proj/a\x1bb", "control or invisible"),
        ("proj\\nginx", "backslashes"),
        ("proj/nginx:latest", "':' is not allowed"),
        ("proj/nginx@sha256", "'@' is not allowed"),
        ("proj/ngi*nx", "'*' is not allowed"),
        ("proj/-nginx", "path component '-nginx'"),
        ("proj/nginx-", "path component 'nginx-'"),
        ("proj/.nginx", "path component '.nginx'"),
        ("proj/nginx.", "path component 'nginx.'"),
        ("proj/_nginx", "path component '_nginx'"),
        ("proj/a___b", "path component 'a___b'"),
        ("proj/a..b", "path component 'a..b'"),
        ("proj/a.-b", "path component 'a.-b'"),
        ("proj/a_-b", "path component 'a_-b'"),
        ("proj/...", "path component '...'"),
        ("-proj/nginx", "path component '-proj'"),
    ],
)
def test_invalid_repository_names(name: str, message: str) -> None:
    with pytest.raises(NameInvalidError, match=message) as info:
        validate_repository_name(name)
    assert len(info.value.message) < 400


@pytest.mark.parametrize("name", [None, 1, b"library/nginx", ["library", "nginx"]])
def test_repository_name_must_be_str(name: object) -> None:
    with pytest.raises(NameInvalidError, match="must be a string"):
        validate_repository_name(name)  # type: ignore[arg-type]


def test_long_names_are_cut_short_in_messages() -> None:
    with pytest.raises(NameInvalidError) as info:
        validate_repository_name("p/" + "A" * 200)
    assert "..." in info.value.message
    assert len(info.value.message) < 150


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("library/nginx", ("library", "nginx")),
        ("a/b/c", ("a", "b/c")),
        ("my-proj/team/app.v2", ("my-proj", "team/app.v2")),
    ],
)
def test_split_repository(name: str, expected: tuple[str, str]) -> None:
    assert split_repository(name) == expected


@pytest.mark.parametrize("name", ["nginx", "../x", "a//b", "A/b", ""])
def test_split_repository_validates(name: str) -> None:
    with pytest.raises(NameInvalidError):
        split_repository(name)


# --- tags --------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag",
    [
        "latest",
        "v1.2.3",
        "1.0",
        "_",
        "_hidden",
        "0",
        "UPPER-case_Mixed.1",
        "sha256-" + "a" * 64 + ".sig",  # cosign's signature tag
        "sha256-" + "a" * 64,  # referrers tag schema
        "a" * 128,
        "a..b",
        "a--b",
        "1.0-rc.1_build.5",
    ],
)
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("", "empty"),
        ("a" * 129, "129 characters long; the limit is 128"),
        ("a" * 100_000, "the limit is 128"),
        (".hidden", "must not start with '.'"),
        ("-v1", "must not start with '-'"),
        ("v1:latest", "':' is not allowed"),
        ("sha256:" + "a" * 64, "':' is not allowed"),
        ("v1/latest", "'/' is not allowed"),
        ("../etc", "must not start with '.'"),
        ("v1+build", r"'\+' is not allowed"),
        ("v1@x", "'@' is not allowed"),
        ("v 1", "whitespace"),
        ("v1\n", "whitespace"),
        ("v1\x00", "NUL"),
        ("v1\x07", "control or invisible"),
        ("vé", "only ASCII"),
        ("版本", "only ASCII"),
        ("%2e%2e", "percent-encoded"),
        ("v1\\x", "backslashes"),
    ],
)
def test_invalid_tags(tag: str, message: str) -> None:
    with pytest.raises(TagInvalidError, match=message):
        validate_tag(tag)


@pytest.mark.parametrize("tag", [None, 5, b"latest"])
def test_tag_must_be_str(tag: object) -> None:
    with pytest.raises(TagInvalidError, match="must be a string"):
        validate_tag(tag)  # type: ignore[arg-type]


# --- projects ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["library", "a", "0", "my-project", "my_project", "my.project", "a1-b2_c3.d4", "x" * 255],
)
def test_valid_project_names(name: str) -> None:
    assert validate_project_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("x" * 256, "256 characters long; the limit is 255"),
        ("Library", "uppercase letters are not allowed"),
        ("-lib", "start and end with a letter or digit"),
        ("lib-", "start and end with a letter or digit"),
        ("_lib", "start and end"),
        (".lib", "start and end"),
        ("lib.", "start and end"),
        ("a--b", "separated by single"),
        ("a__b", "separated by single"),
        ("a..b", "separated by single"),
        ("a._b", "separated by single"),
        ("..", "start and end"),
        ("a/b", "'/' is not allowed"),
        ("a b", "whitespace"),
        ("a\x00", "NUL"),
        ("proj\u00e9", "only ASCII"),
        ("%2e", "percent-encoded"),
        ("a:b", "':' is not allowed"),
    ],
)
def test_invalid_project_names(name: str, message: str) -> None:
    with pytest.raises(NameInvalidError, match=message):
        validate_project_name(name)


def test_project_name_must_be_str() -> None:
    with pytest.raises(NameInvalidError, match="must be a string"):
        validate_project_name(None)  # type: ignore[arg-type]

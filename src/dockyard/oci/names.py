"""Repository, tag and project names.

Repository names follow the OCI distribution grammar::

    [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(\\/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*

with at most 255 characters, plus Dockyard's rule that the first path
component names a project (``<project>/<name>``), as in Harbor.
"""

from __future__ import annotations

import re

from dockyard.errors import NameInvalidError, TagInvalidError

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_PROJECT_NAME_LENGTH",
    "MAX_TAG_LENGTH",
    "split_repository",
    "validate_project_name",
    "validate_repository_name",
    "validate_tag",
]

MAX_NAME_LENGTH = 255
MAX_PROJECT_NAME_LENGTH = 255
MAX_TAG_LENGTH = 128

# Python's ``re`` matches the explicit ranges below only against ASCII, and
# ``fullmatch`` does not let ``$`` accept a trailing newline.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_PROJECT = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
_ALLOWED_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-/")


def _show(value: str) -> str:
    """``repr`` of a user value, cut short so messages stay readable."""
    return repr(value if len(value) <= 64 else value[:61] + "...")


def _describe_bad_char(value: str, allowed: frozenset[str], what: str) -> str | None:
    """A message for the first character outside ``allowed``, or ``None``."""
    for char in value:
        if char in allowed:
            continue
        if char == "\x00":
            return f"{what} must not contain NUL characters"
        if char.isspace():
            return f"{what} must not contain whitespace"
        if not char.isprintable():
            return f"{what} must not contain control or invisible characters"
        if not char.isascii():
            return f"{what} must contain only ASCII characters, found {char!r}"
        if char.isupper():
            return f"uppercase letters are not allowed in a {what}"
        if char == "%":
            return f"percent-encoded characters are not allowed in a {what}"
        if char == "\\":
            return f"backslashes are not allowed in a {what}"
        return f"character {char!r} is not allowed in a {what}"
    return None


def validate_repository_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name; else raise :class:`NameInvalidError`."""
    if not isinstance(name, str):
        raise NameInvalidError(f"repository name must be a string, not {type(name).__name__}")
    if not name:
        raise NameInvalidError("repository name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise NameInvalidError(
            f"repository name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    problem = _describe_bad_char(name, _ALLOWED_NAME_CHARS, "repository name")
    if problem:
        raise NameInvalidError(f"{problem}: {_show(name)}")
    if name.startswith("/"):
        raise NameInvalidError(f"repository name must not start with '/': {_show(name)}")
    if name.endswith("/"):
        raise NameInvalidError(f"repository name must not end with '/': {_show(name)}")
    components = name.split("/")
    for component in components:
        if not component:
            raise NameInvalidError(f"empty path component in repository name {_show(name)}")
        if component == "..":
            raise NameInvalidError(f"'..' is not allowed in a repository name: {_show(name)}")
        if component == ".":
            raise NameInvalidError(f"'.' is not allowed as a path component: {_show(name)}")
    if len(components) < 2:
        raise NameInvalidError(
            f"repository name must start with a project: <project>/<name>, got {_show(name)}"
        )
    for component in components:
        if not _COMPONENT.fullmatch(component):
            raise NameInvalidError(
                f"path component {_show(component)} of repository name {_show(name)} is "
                "invalid: it must be lowercase letters and digits, separated by "
                "'.', '_', '__' or dashes, and start and end with a letter or digit"
            )
    return name


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid tag; else raise :class:`TagInvalidError`."""
    if not isinstance(tag, str):
        raise TagInvalidError(f"tag must be a string, not {type(tag).__name__}")
    if not tag:
        raise TagInvalidError("tag is empty")
    if len(tag) > MAX_TAG_LENGTH:
        raise TagInvalidError(f"tag is {len(tag)} characters long; the limit is {MAX_TAG_LENGTH}")
    if _TAG.fullmatch(tag):
        return tag
    if tag[0] in ".-":
        raise TagInvalidError(f"tag must not start with {tag[0]!r}: {_show(tag)}")
    allowed = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    problem = _describe_bad_char(tag, allowed, "tag")
    raise TagInvalidError(
        f"{problem or 'invalid tag'}: {_show(tag)} (allowed: letters, digits, '_', '.', '-';"
        " not starting with '.' or '-'; at most 128 characters)"
    )


def validate_project_name(name: str) -> str:
    """Return ``name`` if it is a valid Harbor project name; else raise NameInvalidError."""
    if not isinstance(name, str):
        raise NameInvalidError(f"project name must be a string, not {type(name).__name__}")
    if not name:
        raise NameInvalidError("project name is empty")
    if len(name) > MAX_PROJECT_NAME_LENGTH:
        raise NameInvalidError(
            f"project name is {len(name)} characters long; the limit is {MAX_PROJECT_NAME_LENGTH}"
        )
    if _PROJECT.fullmatch(name):
        return name
    problem = _describe_bad_char(name, _ALLOWED_NAME_CHARS - {"/"}, "project name")
    if problem:
        raise NameInvalidError(f"{problem}: {_show(name)}")
    raise NameInvalidError(
        f"project name {_show(name)} is invalid: it must be lowercase letters and digits, "
        "separated by single '.', '_' or '-', and start and end with a letter or digit"
    )


def split_repository(name: str) -> tuple[str, str]:
    """Split a valid repository name into ``(project, rest)``.

    ``"library/nginx"`` gives ``("library", "nginx")``; ``"a/b/c"`` gives
    ``("a", "b/c")``. Raises :class:`NameInvalidError` for an invalid name.
    """
    validate_repository_name(name)
    project, _, rest = name.partition("/")
    return project, rest

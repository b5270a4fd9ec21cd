"""Which repositories and tags a replication policy selects.

A ``name`` or ``tag`` filter value is one of:

- a Harbor pattern (doublestar): ``*`` any run of characters but ``/``, ``**`` any run
  including ``/``, ``?`` one character but ``/``, ``[abc]``/``[a-z]`` a class, ``{a,b}``
  either alternative (nestable);
- ``regex:<expression>``: a Python regular expression that must match the whole name;
- ``semver:<range>`` (tags only): comparisons separated by spaces or commas, all of which
  must hold, e.g. ``semver:>=1.2 <2``; a tag that is not a version (``latest``) is not in
  any range. A leading ``v`` is allowed (``v1.4.0``); ``1.2.3-rc1`` is a pre-release and
  only matches a range that names one.

``decoration`` ``matches`` (the default) keeps what the value matches, ``excludes`` keeps
the rest. An empty value matches everything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from dockyard.errors import BadRequestError

NAME = "name"
TAG = "tag"
LABEL = "label"
RESOURCE = "resource"
TYPES = (NAME, TAG, LABEL, RESOURCE)
MATCHES = "matches"
EXCLUDES = "excludes"
RESOURCE_IMAGE = "image"
RESOURCE_ARTIFACT = "artifact"
REGEX_PREFIX = "regex:"
SEMVER_PREFIX = "semver:"
MAX_VALUE = 1024
MAX_FILTERS = 32

Matcher = Callable[[str], bool]
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*[+*{]")
"""A group holding a quantifier, itself quantified: refused (a regex is matched on every
push a policy's event trigger sees, so one cannot be let backtrack for ever)."""


def _glob_to_regex(pattern: str) -> str:
    out: list[str] = []
    depth = 0
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise ValueError("an unclosed [")
            body = pattern[i + 1 : end]
            negate = body.startswith(("!", "^"))
            if negate:
                body = body[1:]
            if not body:
                raise ValueError("an empty []")
            out.append("[" + ("^" if negate else "") + re.escape(body).replace("\\-", "-") + "]")
            i = end
        elif ch == "{":
            depth += 1
            out.append("(?:")
        elif ch == "}" and depth:
            depth -= 1
            out.append(")")
        elif ch == "," and depth:
            out.append("|")
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    if depth:
        raise ValueError("an unclosed {")
    return "".join(out)


def _version(tag: str) -> Version | None:
    try:
        return Version(tag)
    except InvalidVersion:
        return None


def compile_value(kind: str, value: str) -> Matcher:
    """A matcher for a ``name`` or ``tag`` filter value; ``ValueError`` saying what is wrong."""
    if len(value) > MAX_VALUE:
        raise ValueError(f"longer than {MAX_VALUE} characters")
    if value.startswith(REGEX_PREFIX):
        if _NESTED_QUANTIFIER.search(value):
            raise ValueError(
                "a repeated group that itself repeats (like (a+)+) can take exponential "
                "time; write it without the nesting"
            )
        try:
            expression = re.compile(value[len(REGEX_PREFIX) :])
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return lambda text: expression.fullmatch(text) is not None
    if value.startswith(SEMVER_PREFIX):
        if kind != TAG:
            raise ValueError("semver: ranges apply to tags only")
        spec_text = ",".join(value[len(SEMVER_PREFIX) :].replace(",", " ").split())
        if not spec_text:
            raise ValueError("semver: needs a range, e.g. semver:>=1.2 <2")
        try:
            spec = SpecifierSet(spec_text)
        except InvalidSpecifier:
            raise ValueError(f"not a version range: {spec_text!r}") from None

        prereleases = bool(spec.prereleases)  # only when the range names one

        def in_range(text: str) -> bool:
            version = _version(text)
            return version is not None and spec.contains(version, prereleases=prereleases)

        return in_range
    if not value:
        return lambda text: True
    expression = re.compile(_glob_to_regex(value), re.DOTALL)
    return lambda text: expression.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class Filter:
    type: str
    value: str | list[str]
    decoration: str = MATCHES


@dataclass
class Selection:
    """A policy's filters, compiled."""

    names: list[tuple[Matcher, bool]]
    tags: list[tuple[Matcher, bool]]
    labels: list[tuple[set[str], bool]]
    resource: str | None

    def repository(self, name: str) -> bool:
        return all(match(name) != exclude for match, exclude in self.names)

    def tag(self, tag: str) -> bool:
        return all(match(tag) != exclude for match, exclude in self.tags)

    def tags_pass(self, tags: Sequence[str]) -> bool:
        """An artifact passes with any tag that passes; an untagged one only when no tag
        filter is set."""
        if not self.tags:
            return True
        return any(self.tag(tag) for tag in tags)

    def labels_pass(self, labels: set[str]) -> bool:
        return all(wanted.issubset(labels) != exclude for wanted, exclude in self.labels)


def parse(filters: Sequence[Filter]) -> Selection:
    """Check and compile; a 400 naming the filter that is wrong."""
    if len(filters) > MAX_FILTERS:
        raise BadRequestError(f"at most {MAX_FILTERS} filters")
    selection = Selection([], [], [], None)
    for item in filters:
        if item.type not in TYPES:
            raise BadRequestError(
                f"filter type {item.type!r} is unknown: use one of {', '.join(TYPES)}"
            )
        if item.decoration not in (MATCHES, EXCLUDES):
            raise BadRequestError(
                f"filter decoration {item.decoration!r} is unknown: use matches or excludes"
            )
        exclude = item.decoration == EXCLUDES
        if item.type == LABEL:
            values = [item.value] if isinstance(item.value, str) else list(item.value)
            if not all(isinstance(v, str) and 0 < len(v) <= 255 for v in values):
                raise BadRequestError("a label filter's value is a list of label names")
            selection.labels.append((set(values), exclude))
            continue
        if not isinstance(item.value, str):
            raise BadRequestError(f"a {item.type} filter's value is a string")
        if item.type == RESOURCE:
            if item.value not in (RESOURCE_IMAGE, RESOURCE_ARTIFACT):
                raise BadRequestError("a resource filter's value is image or artifact")
            selection.resource = item.value
            continue
        try:
            matcher = compile_value(item.type, item.value)
        except ValueError as exc:
            raise BadRequestError(f"{item.type} filter {item.value[:100]!r}: {exc}") from None
        (selection.names if item.type == NAME else selection.tags).append((matcher, exclude))
    return selection


def flatten(repository: str, namespace: str, replace_count: int) -> str:
    """The destination name of ``repository`` (Harbor's flattening levels). Without a
    namespace the name stays. ``-1``: the namespace replaces the first component (the
    project); ``0``: the namespace is put in front of the whole path; ``n``: the first
    ``n`` components are dropped and the namespace put in front. ``ValueError`` when the
    path is too short for ``n`` (its last component always stays)."""
    if not namespace:
        return repository
    parts = repository.split("/")
    if replace_count < 0:
        kept = parts[1:] if len(parts) > 1 else parts
    elif replace_count > len(parts) - 1:
        raise ValueError(
            f"{repository} has {len(parts) - 1} components before its last one; "
            f"cannot flatten {replace_count} levels"
        )
    else:
        kept = parts[replace_count:]
    return "/".join([namespace, *kept])

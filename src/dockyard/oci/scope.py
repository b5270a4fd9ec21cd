"""Docker token-auth scopes: ``repository:library/nginx:pull,push``.

Grammar (distribution ``docs/spec/auth/scope.md``)::

    scope         := resourcetype ":" resourcename ":" action [ "," action ]*
    resourcetype  := resourcetypevalue [ "(" resourcetypevalue ")" ]
    resourcename  := [ hostname "/" ] component [ "/" component ]*

The resource name may itself contain ``':'`` (a registry host with a port),
so a scope splits at its first and last colon.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Scope", "format_challenge_scope", "parse_scope", "parse_scopes"]

_RESOURCE_TYPE = re.compile(r"([a-z0-9]+)(?:\(([a-z0-9]+)\))?")
_NO_SPACE_OR_CONTROL = re.compile(r"[!-~]+")


@dataclass(frozen=True)
class Scope:
    """One requested (or granted) access: resource type, name and actions."""

    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"


def parse_scope(value: str) -> Scope | None:
    """Parse one scope; ``None`` if it is malformed.

    A resource class such as ``repository(plugin)`` is dropped, leaving
    ``repository``. Empty actions (``pull,,push``, a trailing comma) are
    dropped; a scope with no actions at all is returned with an empty set.
    Only printable ASCII without spaces is accepted.
    """
    value = value.strip()
    if not _NO_SPACE_OR_CONTROL.fullmatch(value):
        return None
    first = value.find(":")
    last = value.rfind(":")
    if first == -1 or first == last:
        return None
    raw_type, name, raw_actions = value[:first], value[first + 1 : last], value[last + 1 :]
    match = _RESOURCE_TYPE.fullmatch(raw_type)
    if match is None or not name:
        return None
    actions = frozenset(action for action in raw_actions.split(",") if action)
    return Scope(type=match.group(1), name=name, actions=actions)


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Parse every ``scope`` query value, merging actions on the same resource.

    A value may hold several space-separated scopes (containerd sends them
    that way). Malformed scopes are skipped. Order follows first appearance.
    """
    merged: dict[tuple[str, str], set[str]] = {}
    for value in values:
        for part in value.split():
            scope = parse_scope(part)
            if scope is None:
                continue
            merged.setdefault((scope.type, scope.name), set()).update(scope.actions)
    return [
        Scope(type=type_, name=name, actions=frozenset(actions))
        for (type_, name), actions in merged.items()
    ]


def format_challenge_scope(name: str, actions: Iterable[str]) -> str:
    """The scope for a ``WWW-Authenticate`` challenge: ``repository:<name>:pull,push``.

    Actions are de-duplicated and sorted, as :class:`Scope` prints them.
    """
    return str(Scope(type="repository", name=name, actions=frozenset(actions)))

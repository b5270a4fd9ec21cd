"""Harbor's immutable-rule shapes (swagger ``ImmutableRule``, ``ImmutableSelector``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ImmutableSelector(BaseModel):
    kind: str | None = None
    """``doublestar``."""
    decoration: str | None = None
    """``repoMatches``/``repoExcludes`` (repositories), ``matches``/``excludes`` (tags)."""
    pattern: str | None = None
    extras: str | None = None


class ImmutableRule(BaseModel):
    id: int | None = None
    priority: int | None = None
    disabled: bool | None = None
    action: str | None = None
    """``immutable``."""
    template: str | None = None
    """``immutable_template``."""
    params: dict[str, Any] | None = None
    tag_selectors: list[ImmutableSelector] | None = None
    scope_selectors: dict[str, list[ImmutableSelector]] | None = None
    """``{"repository": [selector]}``."""

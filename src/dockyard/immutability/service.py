"""Tag immutability: which tags a project's rules protect, and the rules' management."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.immutability import repository as repo
from dockyard.immutability.matcher import PatternError, Rule, Selector, protecting_rule
from dockyard.immutability.models import ImmutableTagRule
from dockyard.immutability.schemas import ImmutableRule

log = logging.getLogger("dockyard.immutability")


def inner_name(repository: str) -> str:
    """``app/web`` of ``library/app/web``: rules match names inside the project, as Harbor's."""
    return repository.split("/", 1)[1] if "/" in repository else repository


def stored_rule(row: ImmutableTagRule) -> ImmutableRule:
    """The API shape of a stored rule (``tag_filter`` holds its selectors as JSON)."""
    rule = ImmutableRule.model_validate_json(row.tag_filter)
    rule.id = row.id
    rule.priority = row.priority
    rule.disabled = row.disabled
    return rule


def matcher_rule(row: ImmutableTagRule) -> Rule | None:
    """The matcher's view of a stored rule; None (and a log line) if it cannot be read."""
    try:
        rule = stored_rule(row)
        scopes = (rule.scope_selectors or {}).get("repository") or []
        repositories = tuple(Selector(s.decoration or "", s.pattern or "") for s in scopes)
        tag_selectors = rule.tag_selectors or []
        tags = tuple(Selector(s.decoration or "", s.pattern or "") for s in tag_selectors)
        for selector in repositories + tags:
            selector.selects("")  # compiles the pattern
    except (ValidationError, PatternError, json.JSONDecodeError):
        log.warning("immutable tag rule %s is unreadable; it is ignored", row.id)
        return None
    return Rule(row.id, repositories, tags)


async def project_rules(session: AsyncSession, project_id: int) -> list[Rule]:
    """The project's enabled rules, ready to match (one query)."""
    rules = (matcher_rule(row) for row in await repo.enabled_rules(session, project_id))
    return [rule for rule in rules if rule is not None]


def protecting(rules: Sequence[Rule], repository: str, tag: str) -> Rule | None:
    """The rule that makes ``tag`` of ``repository`` (full name) immutable, if any."""
    return protecting_rule(rules, inner_name(repository), tag)


async def immutable_tags(
    session: AsyncSession, project_id: int, repository: str, tags: Iterable[str]
) -> set[str]:
    """Which of ``tags`` of ``repository`` (full name, ``project/name``) are immutable
    under the project's enabled rules."""
    wanted = list(tags)
    if not wanted:
        return set()
    rules = await project_rules(session, project_id)
    if not rules:
        return set()
    return {tag for tag in wanted if protecting(rules, repository, tag) is not None}

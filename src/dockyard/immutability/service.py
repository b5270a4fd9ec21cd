"""Tag immutability: which tags a project's rules protect, and the rules' management.

A rule is Harbor's ``ImmutableRule``: one repository selector and one tag
selector (doublestar patterns, include or exclude). A tag is immutable when any
enabled rule of its project selects both its repository (by its name inside the
project) and the tag. ``hooks.RegistryHooks`` enforces it on every push and
removal; the artifact listing reports it with ``immutable_tags``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from anyio import to_thread
from pydantic import ValidationError
from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.audit import service as audit
from dockyard.audit.events import Actor, AuditEvent
from dockyard.db.listing import PageRequest, apply_q, fetch_page, parse_q, parse_sort
from dockyard.errors import AlreadyExistsError, BadRequestError, NotFoundError
from dockyard.iam.policy import Action, Principal, Resource
from dockyard.immutability import repository as repo
from dockyard.immutability.matcher import (
    MAX_PATTERN,
    REPOSITORY_DECORATIONS,
    REPOSITORY_KIND,
    TAG_DECORATIONS,
    TAG_KIND,
    PatternError,
    Rule,
    RuleSet,
    Selector,
    check_pattern,
    compile_pattern,
)
from dockyard.immutability.models import ImmutableTagRule
from dockyard.immutability.schemas import ImmutableRule, ImmutableSelector
from dockyard.projects.service import require, resolve_project

log = logging.getLogger("dockyard.immutability")

TEMPLATE = "immutable_template"
ACTION = "immutable"
MAX_RULES = 15
"""Rules per project, Harbor's limit."""
RESOURCE_TYPE = "immutable-rule"
_YIELD_EVERY = 100
INLINE_MATCHES = 2000
"""Rule x tag checks done on the event loop; more (a page of many tags) go to a thread, so
no request holds the loop for long (each check is bounded: see ``matcher.Pattern``)."""
_MAX_EXTRAS = 1024
_MAX_PARAMS = 4096
_MAX_PRIORITY = 2**31 - 1

_COLUMNS: dict[str, ColumnElement[Any]] = {
    "id": ImmutableTagRule.id.expression,
    "priority": ImmutableTagRule.priority.expression,
    "disabled": ImmutableTagRule.disabled.expression,
    "creation_time": ImmutableTagRule.creation_time.expression,
}


# --- which tags are immutable --------------------------------------------------------------


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
            compile_pattern(selector.pattern)
    except (ValidationError, PatternError, json.JSONDecodeError):
        log.warning("immutable tag rule %s is unreadable; it is ignored", row.id)
        return None
    return Rule(row.id, repositories, tags)


async def project_rules(session: AsyncSession, project_id: int) -> RuleSet:
    """The project's enabled rules, ready to match (one query; each pattern compiled once)."""
    rules = (matcher_rule(row) for row in await repo.enabled_rules(session, project_id))
    return RuleSet(rule for rule in rules if rule is not None)


def protecting(rules: RuleSet, repository: str, tag: str) -> Rule | None:
    """The rule that makes ``tag`` of ``repository`` (full name) immutable, if any."""
    return rules.protecting(inner_name(repository), tag)


def _protected(rules: RuleSet, pairs: Sequence[tuple[str, str]]) -> list[Rule | None]:
    found: list[Rule | None] = []
    for done, (repository, tag) in enumerate(pairs, 1):
        found.append(protecting(rules, repository, tag))
        if done % _YIELD_EVERY == 0:
            time.sleep(0)  # in a worker thread: hand the GIL to the event loop now
    return found


async def protecting_each(rules: RuleSet, pairs: Sequence[tuple[str, str]]) -> list[Rule | None]:
    """``protecting`` for each (repository full name, tag) pair, in order: on the event loop
    for a few, in a worker thread past ``INLINE_MATCHES`` checks or when a stored pattern
    needs the slow automaton (pure CPU, no database)."""
    if not rules or not pairs:
        return [None] * len(pairs)
    if rules.bounded and len(pairs) * len(rules) <= INLINE_MATCHES:
        return _protected(rules, pairs)
    return await to_thread.run_sync(_protected, rules, pairs)


async def immutable_tags(
    session: AsyncSession, project_id: int, repository: str, tags: Iterable[str]
) -> set[str]:
    """Which of ``tags`` of ``repository`` (full name, ``project/name``) are immutable
    under the project's enabled rules."""
    wanted = list(tags)
    if not wanted:
        return set()
    rules = await project_rules(session, project_id)
    found = await protecting_each(rules, [(repository, tag) for tag in wanted])
    return {tag for tag, rule in zip(wanted, found, strict=True) if rule is not None}


# --- validation ----------------------------------------------------------------------------


def _selector(
    given: ImmutableSelector, where: str, kind: str, decorations: tuple[str, ...]
) -> ImmutableSelector:
    if given.kind not in (None, "", kind):
        raise BadRequestError(f"{where}.kind must be {kind!r}")
    if given.decoration not in decorations:
        raise BadRequestError(f"{where}.decoration must be one of {', '.join(decorations)}")
    pattern = given.pattern or ""
    if not pattern:
        raise BadRequestError(f"{where}.pattern is required (** selects everything)")
    if len(pattern) > MAX_PATTERN:
        raise BadRequestError(f"{where}.pattern is longer than {MAX_PATTERN} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in pattern):
        raise BadRequestError(f"{where}.pattern must not contain control characters")
    try:
        check_pattern(pattern)
    except PatternError as exc:
        raise BadRequestError(f"{where}.pattern {pattern!r} is not valid: {exc}") from None
    extras = given.extras or ""
    if len(extras) > _MAX_EXTRAS:
        raise BadRequestError(f"{where}.extras is longer than {_MAX_EXTRAS} characters")
    return ImmutableSelector(kind=kind, decoration=given.decoration, pattern=pattern, extras=extras)


def _filter_json(body: ImmutableRule) -> str:
    """The rule's selectors, checked, as the canonical JSON stored in ``tag_filter``."""
    if body.template not in (None, "", TEMPLATE):
        raise BadRequestError(f"template must be {TEMPLATE!r}")
    if body.action not in (None, "", ACTION):
        raise BadRequestError(f"action must be {ACTION!r}")
    tags = body.tag_selectors or []
    if len(tags) != 1:
        raise BadRequestError("tag_selectors must hold exactly one selector")
    scopes = body.scope_selectors or {}
    if set(scopes) != {"repository"}:
        raise BadRequestError("scope_selectors must hold exactly one key, 'repository'")
    if len(scopes["repository"]) != 1:
        raise BadRequestError("scope_selectors.repository must hold exactly one selector")
    params = body.params or {}
    if len(json.dumps(params)) > _MAX_PARAMS:
        raise BadRequestError(f"params is larger than {_MAX_PARAMS} characters of JSON")
    rule = ImmutableRule(
        action=ACTION,
        template=TEMPLATE,
        params=params,
        tag_selectors=[_selector(tags[0], "tag_selectors[0]", TAG_KIND, TAG_DECORATIONS)],
        scope_selectors={
            "repository": [
                _selector(
                    scopes["repository"][0],
                    "scope_selectors.repository[0]",
                    REPOSITORY_KIND,
                    REPOSITORY_DECORATIONS,
                )
            ]
        },
    )
    return rule.model_dump_json(exclude_none=True)


def _priority(value: int | None, default: int) -> int:
    if value is None:
        return default
    if not -_MAX_PRIORITY - 1 <= value <= _MAX_PRIORITY:
        raise BadRequestError("priority must be a 32-bit integer")
    return value


def _describe(tag_filter: str) -> str:
    rule = ImmutableRule.model_validate_json(tag_filter)
    scope = (rule.scope_selectors or {}).get("repository") or [ImmutableSelector()]
    tag = (rule.tag_selectors or [ImmutableSelector()])[0]
    return (
        f"repositories {scope[0].decoration} {scope[0].pattern!r}, "
        f"tags {tag.decoration} {tag.pattern!r}"
    )


async def _check_unique(
    session: AsyncSession, project_id: int, tag_filter: str, rule_id: int | None
) -> None:
    for other in await repo.rules_of_project(session, project_id):
        if other.id != rule_id and other.tag_filter == tag_filter:
            # Harbor: a rule identical to an existing one is a conflict (409).
            raise AlreadyExistsError(f"immutable tag rule {other.id} already says the same")


# --- management ----------------------------------------------------------------------------


async def check_access(
    session: AsyncSession,
    principal: Principal,
    name_or_id: str,
    by_name: bool,
    action: Action,
    rule_id: int | None = None,
) -> None:
    """Raise unless ``principal`` may ``action`` immutable tag rules of the project (so a
    caller without the right learns nothing from a bad body), and, given ``rule_id``,
    unless that rule is the project's (a missing rule is 404 before any body is read,
    as in Harbor)."""
    project, context = await resolve_project(session, principal, name_or_id, by_name)
    require(principal, action, Resource.IMMUTABLE_TAG, context)
    if rule_id is not None:
        await _rule_of(session, project.project_id, rule_id)


async def list_rules(
    session: AsyncSession,
    principal: Principal,
    name_or_id: str,
    by_name: bool,
    q: str | None,
    sort: str | None,
    page: PageRequest,
) -> tuple[list[ImmutableRule], int]:
    """``ListImmuRules``: the project's rules (``immutable-tag:list``)."""
    project, context = await resolve_project(session, principal, name_or_id, by_name)
    require(principal, Action.LIST, Resource.IMMUTABLE_TAG, context)
    stmt = apply_q(repo.rules_query(project.project_id), parse_q(q), _COLUMNS)
    order = parse_sort(sort, _COLUMNS)
    rows, total = await fetch_page(session, stmt, page, order, ImmutableTagRule.id.expression)
    return [stored_rule(row[0]) for row in rows], total


async def create_rule(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    name_or_id: str,
    by_name: bool,
    body: ImmutableRule,
) -> int:
    """``CreateImmuRule``; returns the new rule's id."""
    project, context = await resolve_project(session, principal, name_or_id, by_name)
    require(principal, Action.CREATE, Resource.IMMUTABLE_TAG, context)
    tag_filter = _filter_json(body)
    priority = _priority(body.priority, 0)
    await repo.lock_project_rules(session, project.project_id)
    if await repo.count_rules(session, project.project_id) >= MAX_RULES:
        raise BadRequestError(
            f"project {project.name} already has {MAX_RULES} immutable tag rules, the most allowed"
        )
    await _check_unique(session, project.project_id, tag_filter, None)
    row = ImmutableTagRule(
        project_id=project.project_id,
        tag_filter=tag_filter,
        priority=priority,
        disabled=bool(body.disabled),
    )
    session.add(row)
    await session.flush()
    await audit.record(
        session,
        actor,
        AuditEvent(
            "create",
            RESOURCE_TYPE,
            f"{project.name}/immutabletagrules/{row.id}",
            project.project_id,
            _describe(tag_filter),
        ),
    )
    return row.id


async def _rule_of(session: AsyncSession, project_id: int, rule_id: int) -> ImmutableTagRule:
    row = await repo.find_rule(session, rule_id)
    if row is None or row.project_id != project_id:
        raise NotFoundError(f"immutable tag rule {rule_id} not found")
    return row


async def update_rule(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    name_or_id: str,
    by_name: bool,
    rule_id: int,
    body: ImmutableRule,
) -> None:
    """``UpdateImmuRule``: new selectors (when the body carries any), priority, enable/disable.

    A body with only ``disabled`` (and ``priority``) toggles the rule, as Harbor's
    console sends it; selectors, when given, are checked as on create.
    """
    project, context = await resolve_project(session, principal, name_or_id, by_name)
    require(principal, Action.UPDATE, Resource.IMMUTABLE_TAG, context)
    row = await _rule_of(session, project.project_id, rule_id)
    changes = []
    if body.tag_selectors is not None or body.scope_selectors is not None:
        tag_filter = _filter_json(body)
        if tag_filter != row.tag_filter:
            await _check_unique(session, project.project_id, tag_filter, row.id)
            row.tag_filter = tag_filter
            changes.append(_describe(tag_filter))
    priority = _priority(body.priority, row.priority)
    if priority != row.priority:
        row.priority = priority
        changes.append(f"priority {priority}")
    if body.disabled is not None and body.disabled != row.disabled:
        row.disabled = body.disabled
        changes.append("disabled" if body.disabled else "enabled")
    await audit.record(
        session,
        actor,
        AuditEvent(
            "update",
            RESOURCE_TYPE,
            f"{project.name}/immutabletagrules/{row.id}",
            project.project_id,
            "; ".join(changes) or "unchanged",
        ),
    )


async def delete_rule(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    name_or_id: str,
    by_name: bool,
    rule_id: int,
) -> None:
    """``DeleteImmuRule``."""
    project, context = await resolve_project(session, principal, name_or_id, by_name)
    require(principal, Action.DELETE, Resource.IMMUTABLE_TAG, context)
    row = await _rule_of(session, project.project_id, rule_id)
    description = _describe(row.tag_filter)
    await session.delete(row)
    await audit.record(
        session,
        actor,
        AuditEvent(
            "delete",
            RESOURCE_TYPE,
            f"{project.name}/immutabletagrules/{rule_id}",
            project.project_id,
            description,
        ),
    )

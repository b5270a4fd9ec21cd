"""Tag retention rules: what a policy says, and which tags and artifacts it keeps. Pure.

A policy holds up to ``MAX_RULES`` rules, combined with OR: an artifact (or one of
its tags) is kept when any enabled rule keeps it. A rule applies to the
repositories its repository selectors pick (names inside the project, as
immutability rules match them), considers the *candidates* its tag selectors
pick, and keeps some of those by its template:

``always``               every candidate;
``latestPushedK``        the K most recently pushed;
``latestPulledN``        the N most recently pulled (never-pulled ones last);
``latestActiveK``        the K most recently pushed *or* pulled;
``nDaysSinceLastPush``   those pushed within the last N days;
``nDaysSinceLastPull``   those pulled within the last N days.

A candidate is an artifact of the repository that is neither an index's child nor
an accessory (those go with their parent or subject), with its tags. A tag
selector (doublestar ``matches``/``excludes``) picks the tags it passes; a tagged
artifact is a candidate of the rule when any of its tags passes, an untagged one
when the selector's ``extras`` say ``{"untagged": true}``. An artifact's push time
is the latest of its own and its tags' push times (a re-tag counts as a push),
likewise its pull time.

Then, per artifact: a tag no rule kept is removed, unless an immutable tag rule
protects it; an artifact left with no kept tag is removed (its tags with it); an
untagged artifact no rule kept is removed. Everything else stays.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dockyard.immutability.matcher import (
    MAX_PATTERN,
    PatternError,
    Selector,
    check_pattern,
    compile_pattern,
)

ALGORITHM = "or"
ACTION = "retain"
MAX_RULES = 15
"""Rules per policy, Harbor's limit."""
MAX_SELECTORS = 10
SCOPE_LEVEL = "project"
TRIGGER_KIND = "Schedule"
SELECTOR_KIND = "doublestar"
REPOSITORY_DECORATIONS = ("repoMatches", "repoExcludes")
TAG_DECORATIONS = ("matches", "excludes")
MAX_COUNT = 2**31 - 1
MAX_DAYS = 100_000
_MAX_EXTRAS = 1024

ALWAYS = "always"
LATEST_PUSHED = "latestPushedK"
LATEST_PULLED = "latestPulledN"
LATEST_ACTIVE = "latestActiveK"
DAYS_SINCE_PUSH = "nDaysSinceLastPush"
DAYS_SINCE_PULL = "nDaysSinceLastPull"


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    display_text: str
    unit: str | None
    """``COUNT`` or ``DAYS`` for the one integer parameter (keyed by the template's
    name in ``params``); None when the template takes none."""

    def describe(self, value: int | None) -> str:
        return (
            self.display_text.replace("#", str(value)) if value is not None else self.display_text
        )


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(LATEST_PUSHED, "retain the most recently pushed # artifacts", "COUNT"),
        Template(LATEST_PULLED, "retain the most recently pulled # artifacts", "COUNT"),
        Template(LATEST_ACTIVE, "retain the most recently pushed or pulled # artifacts", "COUNT"),
        Template(DAYS_SINCE_PUSH, "retain the artifacts pushed within the last # days", "DAYS"),
        Template(DAYS_SINCE_PULL, "retain the artifacts pulled within the last # days", "DAYS"),
        Template(ALWAYS, "retain always", None),
    )
}


class RuleError(ValueError):
    """A policy or rule that cannot be used; the message says which part and why."""


# --- rules ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TagSelector:
    decoration: str
    pattern: str
    untagged: bool = False

    def selects(self, tag: str) -> bool:
        return Selector(self.decoration, self.pattern).selects(tag)


@dataclass(frozen=True, slots=True)
class Rule:
    """One retention rule, checked and ready to evaluate."""

    id: int
    template: str
    value: int | None
    repositories: tuple[Selector, ...]
    tags: tuple[TagSelector, ...]
    disabled: bool = False
    priority: int = 0

    def applies_to(self, repository: str) -> bool:
        """``repository`` is the name inside the project (``app``, not ``library/app``)."""
        return all(s.selects(repository) for s in self.repositories)

    def describe(self) -> str:
        text = TEMPLATES[self.template].describe(self.value)
        repos = " and ".join(f"{s.decoration} {s.pattern!r}" for s in self.repositories)
        tags = " and ".join(
            f"{s.decoration} {s.pattern!r}" + (" (with untagged)" if s.untagged else "")
            for s in self.tags
        )
        return f"rule {self.id}: {text}, repositories {repos}, tags {tags}"


def _pattern(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise RuleError(f"{where}.pattern is required (** selects everything)")
    if len(value) > MAX_PATTERN:
        raise RuleError(f"{where}.pattern is longer than {MAX_PATTERN} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise RuleError(f"{where}.pattern must not contain control characters")
    try:
        compile_pattern(value)
    except PatternError as exc:
        raise RuleError(f"{where}.pattern {value!r} is not valid: {exc}") from None
    return value


def _kind(value: Any, where: str) -> None:
    if value not in (None, "", SELECTOR_KIND):
        raise RuleError(f"{where}.kind must be {SELECTOR_KIND!r}")


def _decoration(value: Any, where: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise RuleError(f"{where}.decoration must be one of {', '.join(allowed)}")
    return str(value)


_LOOSE_UNTAGGED = re.compile(r"""["']?untagged["']?\s*[:=]\s*["']?(true|false)\b""", re.I)


def parse_extras(value: Any, where: str) -> bool:
    """The ``untagged`` flag of a tag selector's ``extras`` (meant as a JSON object in a string).

    Harbor accepts any string here and reads ``untagged`` from it as best it can:
    its own portal has sent ``["untagged":True]``, which is not JSON. So do we: a
    JSON object's boolean ``untagged``, else an ``untagged: true|false`` written
    loosely anywhere in the text (any case), else the default, tagged only.
    """
    if value in (None, ""):
        return False
    if not isinstance(value, str) or len(value) > _MAX_EXTRAS:
        raise RuleError(
            f"{where}.extras must be a string of at most {_MAX_EXTRAS} characters, "
            'e.g. {"untagged":true}'
        )
    try:
        extras = json.loads(value)
    except ValueError:
        extras = None
    if isinstance(extras, dict) and isinstance(extras.get("untagged"), bool):
        return bool(extras["untagged"])
    loose = _LOOSE_UNTAGGED.search(value)
    return loose is not None and loose.group(1).lower() == "true"


def parse_repository_selector(selector: Mapping[str, Any], where: str) -> Selector:
    _kind(selector.get("kind"), where)
    return Selector(
        _decoration(selector.get("decoration"), where, REPOSITORY_DECORATIONS),
        _pattern(selector.get("pattern"), where),
    )


def parse_tag_selector(selector: Mapping[str, Any], where: str) -> TagSelector:
    _kind(selector.get("kind"), where)
    return TagSelector(
        _decoration(selector.get("decoration"), where, TAG_DECORATIONS),
        _pattern(selector.get("pattern"), where),
        parse_extras(selector.get("extras"), where),
    )


def parse_value(template: str, params: Mapping[str, Any] | None, where: str) -> int | None:
    """The template's integer parameter (``params[template]``), or None for ``always``."""
    unit = TEMPLATES[template].unit
    if unit is None:
        return None
    raw = (params or {}).get(template)
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw.strip())
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise RuleError(f"{where}.params.{template} must be a whole number")
    limit = MAX_DAYS if unit == "DAYS" else MAX_COUNT
    if not 0 <= raw <= limit:
        raise RuleError(f"{where}.params.{template} must be between 0 and {limit}")
    return raw


def _selector_list(value: Any, where: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not value:
        raise RuleError(f"{where} must hold at least one selector")
    if len(value) > MAX_SELECTORS:
        raise RuleError(f"{where} holds more than {MAX_SELECTORS} selectors")
    if not all(isinstance(item, Mapping) for item in value):
        raise RuleError(f"{where} must hold selector objects")
    return value


def parse_rule(raw: Mapping[str, Any], rule_id: int) -> Rule:
    """A rule as Harbor's API spells it (``template``, ``params``, ``tag_selectors``,
    ``scope_selectors.repository``…), checked; ``RuleError`` says what is wrong."""
    where = f"rules[{rule_id - 1}]"
    template = raw.get("template")
    if not isinstance(template, str) or template not in TEMPLATES:
        raise RuleError(f"{where}.template must be one of {', '.join(TEMPLATES)}")
    if raw.get("action") not in (None, "", ACTION):
        raise RuleError(f"{where}.action must be {ACTION!r}")
    params = raw.get("params")
    if params is not None and not isinstance(params, Mapping):
        raise RuleError(f"{where}.params must be an object")
    scopes = raw.get("scope_selectors")
    if not isinstance(scopes, Mapping) or set(scopes) != {"repository"}:
        raise RuleError(f"{where}.scope_selectors must hold exactly one key, 'repository'")
    repo_where = f"{where}.scope_selectors.repository"
    repositories = tuple(
        parse_repository_selector(s, f"{repo_where}[{i}]")
        for i, s in enumerate(_selector_list(scopes["repository"], repo_where))
    )
    tag_where = f"{where}.tag_selectors"
    tags = tuple(
        parse_tag_selector(s, f"{tag_where}[{i}]")
        for i, s in enumerate(_selector_list(raw.get("tag_selectors"), tag_where))
    )
    priority = raw.get("priority") or 0
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > MAX_COUNT:
        raise RuleError(f"{where}.priority must be a 32-bit integer")
    disabled = raw.get("disabled") or False
    if not isinstance(disabled, bool):
        raise RuleError(f"{where}.disabled must be true or false")
    return Rule(
        id=rule_id,
        template=template,
        value=parse_value(template, params, where),
        repositories=repositories,
        tags=tags,
        disabled=disabled,
        priority=priority,
    )


def parse_rules(raw: Sequence[Mapping[str, Any]] | None) -> list[Rule]:
    """A policy's rules, checked: at most ``MAX_RULES``, no two alike. Ids are positions."""
    items = list(raw or [])
    if len(items) > MAX_RULES:
        raise RuleError(f"a policy holds at most {MAX_RULES} rules, not {len(items)}")
    rules = []
    for position, item in enumerate(items, start=1):
        if not isinstance(item, Mapping):
            raise RuleError(f"rules[{position - 1}] must be an object")
        rules.append(parse_rule(item, position))
    seen: dict[tuple[Any, ...], int] = {}
    for rule in rules:
        key = (rule.template, rule.value, rule.repositories, rule.tags)
        if key in seen:
            raise RuleError(f"rules[{rule.id - 1}] says the same as rules[{seen[key] - 1}]")
        seen[key] = rule.id
    return rules


def check_new_rules(rules: Sequence[Rule]) -> None:
    """Refuse, for a policy being saved, patterns past the matcher's bounds on brace
    alternatives (a stored one still runs, by the slower automaton)."""
    for rule in rules:
        for kind, selectors in (("repository", rule.repositories), ("tag", rule.tags)):
            for selector in selectors:
                try:
                    check_pattern(selector.pattern)
                except PatternError as exc:
                    raise RuleError(
                        f"rules[{rule.id - 1}] {kind} pattern {selector.pattern!r}: {exc}"
                    ) from None


def rule_json(rule: Rule) -> dict[str, Any]:
    """A checked rule in Harbor's ``RetentionRule`` shape (what the API stores and shows)."""
    params: dict[str, Any] = {rule.template: rule.value} if rule.value is not None else {}
    return {
        "id": rule.id,
        "priority": rule.priority,
        "disabled": rule.disabled,
        "action": ACTION,
        "template": rule.template,
        "params": params,
        "tag_selectors": [
            {
                "kind": SELECTOR_KIND,
                "decoration": s.decoration,
                "pattern": s.pattern,
                "extras": json.dumps({"untagged": s.untagged}, separators=(",", ":")),
            }
            for s in rule.tags
        ],
        "scope_selectors": {
            "repository": [
                {"kind": SELECTOR_KIND, "decoration": s.decoration, "pattern": s.pattern}
                for s in rule.repositories
            ]
        },
    }


# --- candidates and evaluation -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TagFacts:
    name: str
    push_time: datetime
    pull_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """An artifact of the repository retention may remove, with its tags."""

    artifact_id: int
    digest: str
    push_time: datetime
    pull_time: datetime | None = None
    tags: tuple[TagFacts, ...] = ()

    @property
    def pushed(self) -> datetime:
        return max([self.push_time, *(t.push_time for t in self.tags)])

    @property
    def pulled(self) -> datetime | None:
        times = [t for t in (self.pull_time, *(t.pull_time for t in self.tags)) if t is not None]
        return max(times) if times else None

    @property
    def active(self) -> datetime:
        pulled = self.pulled
        return max(self.pushed, pulled) if pulled is not None else self.pushed


def selected_tags(rule: Rule, candidate: Candidate) -> tuple[str, ...] | None:
    """The tags of ``candidate`` the rule's tag selectors pass (empty for an untagged
    artifact they take), or None when the candidate is not the rule's."""
    if not candidate.tags:
        return () if all(s.untagged for s in rule.tags) else None
    names = tuple(t.name for t in candidate.tags if all(s.selects(t.name) for s in rule.tags))
    return names or None


def _newest_first(
    candidates: Iterable[Candidate], key: Callable[[Candidate], Any]
) -> list[Candidate]:
    return sorted(candidates, key=lambda c: (key(c), c.artifact_id), reverse=True)


def kept_by_template(rule: Rule, candidates: Sequence[Candidate], now: datetime) -> list[Candidate]:
    """Which of the rule's ``candidates`` its template keeps."""
    value = rule.value if rule.value is not None else 0
    if rule.template == ALWAYS:
        return list(candidates)
    if rule.template == LATEST_PUSHED:
        return _newest_first(candidates, lambda c: c.pushed)[:value]
    if rule.template == LATEST_ACTIVE:
        return _newest_first(candidates, lambda c: c.active)[:value]
    if rule.template == LATEST_PULLED:
        # Pulled ones by pull time, then the never pulled by push time (Harbor fills N so).
        def pulled_key(c: Candidate) -> tuple[int, datetime]:
            pulled = c.pulled
            return (1, pulled) if pulled is not None else (0, c.pushed)

        return _newest_first(candidates, pulled_key)[:value]
    cutoff = now - timedelta(days=value)
    if rule.template == DAYS_SINCE_PUSH:
        return [c for c in candidates if c.pushed >= cutoff]
    if rule.template == DAYS_SINCE_PULL:
        return [c for c in candidates if c.pulled is not None and c.pulled >= cutoff]
    raise RuleError(f"unknown template {rule.template!r}")


@dataclass(slots=True)
class Decision:
    """What retention does with one candidate, and why."""

    candidate: Candidate
    kept_tags: dict[str, str] = field(default_factory=dict)
    """Tag -> why it stays (the rules that keep it, or ``immutable``)."""
    removed_tags: list[str] = field(default_factory=list)
    kept_by: list[int] = field(default_factory=list)
    """Ids of the rules that keep the (untagged) artifact, or any of its tags."""
    immutable_tags: list[str] = field(default_factory=list)

    @property
    def keep_artifact(self) -> bool:
        if self.candidate.tags:
            return bool(self.kept_tags)
        return bool(self.kept_by)


def evaluate(
    rules: Sequence[Rule],
    repository: str,
    candidates: Sequence[Candidate],
    now: datetime,
    immutable: Callable[[str], bool] = lambda _tag: False,
) -> list[Decision]:
    """Decide, for each candidate of ``repository`` (name inside the project), what stays.

    ``immutable(tag)`` says whether an immutable tag rule protects a tag: such a tag
    stays whatever the retention rules say, and so does its artifact.
    Decisions come back in ``candidates``' order.
    """
    decisions = {c.artifact_id: Decision(c) for c in candidates}
    kept: dict[int, dict[str, list[int]]] = {c.artifact_id: {} for c in candidates}
    for rule in rules:
        if rule.disabled or not rule.applies_to(repository):
            continue
        picked: dict[int, tuple[str, ...]] = {}
        for candidate in candidates:
            names = selected_tags(rule, candidate)
            if names is not None:
                picked[candidate.artifact_id] = names
        pool = [c for c in candidates if c.artifact_id in picked]
        for candidate in kept_by_template(rule, pool, now):
            decision = decisions[candidate.artifact_id]
            decision.kept_by.append(rule.id)
            for name in picked[candidate.artifact_id]:
                kept[candidate.artifact_id].setdefault(name, []).append(rule.id)
    for candidate in candidates:
        decision = decisions[candidate.artifact_id]
        by_tag = kept[candidate.artifact_id]
        for tag in candidate.tags:
            if tag.name in by_tag:
                rule_ids = ", ".join(str(r) for r in by_tag[tag.name])
                decision.kept_tags[tag.name] = f"rule {rule_ids}"
            elif immutable(tag.name):
                decision.kept_tags[tag.name] = "immutable"
                decision.immutable_tags.append(tag.name)
            else:
                decision.removed_tags.append(tag.name)
    return [decisions[c.artifact_id] for c in candidates]


def repositories_in_scope(rules: Sequence[Rule], repositories: Iterable[str]) -> list[str]:
    """The repositories (names inside the project) at least one enabled rule applies to."""
    active = [r for r in rules if not r.disabled]
    return [name for name in repositories if any(r.applies_to(name) for r in active)]

"""Retention rules: parsing and checking, each template's choice, selectors, OR-combination,
immutable tags, and what happens to tags and artifacts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dockyard.retention.rules import (
    MAX_RULES,
    TEMPLATES,
    Candidate,
    Decision,
    Rule,
    RuleError,
    TagFacts,
    evaluate,
    kept_by_template,
    parse_extras,
    parse_rule,
    parse_rules,
    repositories_in_scope,
    rule_json,
    selected_tags,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


def raw_rule(
    template: str = "always",
    value: Any = None,
    *,
    repo: str = "**",
    tag: str = "**",
    repo_decoration: str = "repoMatches",
    tag_decoration: str = "matches",
    untagged: bool | None = None,
    **extra: Any,
) -> dict[str, Any]:
    selector: dict[str, Any] = {"kind": "doublestar", "decoration": tag_decoration, "pattern": tag}
    if untagged is not None:
        selector["extras"] = f'{{"untagged":{str(untagged).lower()}}}'
    body: dict[str, Any] = {
        "disabled": False,
        "action": "retain",
        "template": template,
        "params": {template: value} if value is not None else {},
        "tag_selectors": [selector],
        "scope_selectors": {
            "repository": [{"kind": "doublestar", "decoration": repo_decoration, "pattern": repo}]
        },
    }
    body.update(extra)
    return body


def rule(template: str = "always", value: Any = None, rule_id: int = 1, **kw: Any) -> Rule:
    return parse_rule(raw_rule(template, value, **kw), rule_id)


def cand(
    artifact_id: int,
    pushed_days_ago: float,
    *tags: str,
    pulled_days_ago: float | None = None,
) -> Candidate:
    pull = days_ago(pulled_days_ago) if pulled_days_ago is not None else None
    return Candidate(
        artifact_id,
        f"sha256:{artifact_id:064x}",
        days_ago(pushed_days_ago),
        pull,
        tuple(TagFacts(t, days_ago(pushed_days_ago)) for t in tags),
    )


def kept_ids(rules: list[Rule], candidates: list[Candidate], repo: str = "app") -> list[int]:
    return [
        d.candidate.artifact_id for d in evaluate(rules, repo, candidates, NOW) if d.keep_artifact
    ]


# --- parsing -------------------------------------------------------------------------------


def test_a_harbor_console_rule_parses_and_round_trips() -> None:
    parsed = rule("latestPushedK", 3, repo="app/**", tag="v*", untagged=True)
    assert parsed.value == 3 and parsed.tags[0].untagged
    doc = rule_json(parsed)
    assert doc["params"] == {"latestPushedK": 3}
    assert doc["tag_selectors"][0]["extras"] == '{"untagged":true}'
    assert parse_rule(doc, 1) == parsed


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_every_template_parses(template: str) -> None:
    value = None if TEMPLATES[template].unit is None else 5
    assert rule(template, value).template == template


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"template": "latestPushedX"}, "template must be one of"),
        ({"template": None}, "template must be one of"),
        ({"action": "delete"}, "action must be 'retain'"),
        ({"params": {"latestPushedK": -1}}, "between 0 and"),
        ({"params": {"latestPushedK": "many"}}, "whole number"),
        ({"params": {"latestPushedK": True}}, "whole number"),
        ({"params": {}}, "whole number"),
        ({"params": []}, "params must be an object"),
        ({"scope_selectors": {}}, "exactly one key"),
        ({"scope_selectors": {"repository": []}}, "at least one selector"),
        ({"scope_selectors": {"project": [{}]}}, "exactly one key"),
        ({"tag_selectors": []}, "at least one selector"),
        ({"tag_selectors": None}, "at least one selector"),
        ({"tag_selectors": ["x"]}, "selector objects"),
        ({"tag_selectors": [{"decoration": "matches"}]}, "pattern is required"),
        ({"tag_selectors": [{"decoration": "repoMatches", "pattern": "x"}]}, "decoration"),
        ({"tag_selectors": [{"decoration": "matches", "pattern": "{a"}]}, "not valid"),
        ({"tag_selectors": [{"decoration": "matches", "pattern": "a\x01"}]}, "control"),
        ({"tag_selectors": [{"decoration": "matches", "pattern": "a" * 300}]}, "longer"),
        ({"tag_selectors": [{"kind": "regex", "decoration": "matches", "pattern": "a"}]}, "kind"),
        (
            {"tag_selectors": [{"decoration": "matches", "pattern": "a", "extras": "x" * 2000}]},
            "extras must be a string of at most",
        ),
        (
            {"scope_selectors": {"repository": [{"decoration": "matches", "pattern": "a"}]}},
            "decoration",
        ),
        ({"priority": "high"}, "priority"),
        ({"disabled": "no"}, "disabled"),
    ],
)
def test_bad_rules_are_refused_with_a_reason(change: dict[str, Any], message: str) -> None:
    body = raw_rule("latestPushedK", 3)
    body.update(change)
    with pytest.raises(RuleError, match=message):
        parse_rule(body, 1)


def test_counts_and_days_have_limits() -> None:
    assert rule("latestPushedK", "7").value == 7
    assert rule("nDaysSinceLastPush", 100_000).value == 100_000
    with pytest.raises(RuleError):
        rule("nDaysSinceLastPush", 100_001)
    with pytest.raises(RuleError):
        rule("latestPulledN", 2**31)


def test_extras_default_to_tagged_only() -> None:
    assert parse_extras(None, "x") is False
    assert parse_extras("", "x") is False
    assert parse_extras("{}", "x") is False
    assert parse_extras('{"untagged": true}', "x") is True
    assert parse_extras("[true]", "x") is False
    assert parse_extras("{", "x") is False
    assert parse_extras('{"untagged":1}', "x") is False


def test_extras_that_are_not_json_are_read_as_harbor_reads_them() -> None:
    # What Harbor's portal sends: not JSON, accepted by Harbor, meaning untagged.
    assert parse_extras('["untagged":True]', "x") is True
    assert parse_extras('["untagged":True]', "x") is True
    assert parse_extras("{untagged: false}", "x") is False
    assert parse_extras("'untagged'=TRUE", "x") is True
    assert parse_extras("untagged", "x") is False
    parsed = parse_rule(
        {
            **raw_rule("always"),
            "tag_selectors": [
                {
                    "kind": "doublestar",
                    "decoration": "matches",
                    "pattern": "**",
                    "extras": '["untagged":True]',
                }
            ],
        },
        1,
    )
    assert parsed.tags[0].untagged is True


def test_a_policy_holds_at_most_fifteen_distinct_rules() -> None:
    many = [raw_rule("latestPushedK", n) for n in range(MAX_RULES)]
    assert [r.id for r in parse_rules(many)] == list(range(1, MAX_RULES + 1))
    with pytest.raises(RuleError, match="at most 15"):
        parse_rules([*many, raw_rule("always")])
    with pytest.raises(RuleError, match="says the same"):
        parse_rules([raw_rule("latestPushedK", 1), raw_rule("latestPushedK", 1)])
    with pytest.raises(RuleError, match="must be an object"):
        parse_rules(["x"])  # type: ignore[list-item]
    assert parse_rules(None) == []


# --- selectors -----------------------------------------------------------------------------


def test_tag_selectors_pick_matching_tags_and_untagged_only_when_asked() -> None:
    both = cand(1, 1, "v1", "latest")
    bare = cand(2, 1)
    assert selected_tags(rule(tag="v*"), both) == ("v1",)
    assert selected_tags(rule(tag="v*", tag_decoration="excludes"), both) == ("latest",)
    assert selected_tags(rule(tag="{latest,v1}"), both) == ("v1", "latest")
    assert selected_tags(rule(tag="nope"), both) is None
    assert selected_tags(rule(), bare) is None
    assert selected_tags(rule(untagged=True), bare) == ()


def test_repository_selectors_match_names_inside_the_project() -> None:
    web = rule(repo="team/**")
    assert web.applies_to("team/web") and web.applies_to("team/a/b")
    assert not web.applies_to("other")
    not_tmp = rule(repo="{tmp,scratch}/**", repo_decoration="repoExcludes")
    assert not_tmp.applies_to("team/web") and not not_tmp.applies_to("tmp/x")
    disabled = rule(repo="**", disabled=True)
    assert repositories_in_scope([web, disabled], ["team/web", "other"]) == ["team/web"]
    assert repositories_in_scope([disabled], ["team/web"]) == []


# --- templates -----------------------------------------------------------------------------

# Five artifacts: pushed 10, 8, 6, 4, 2 days ago; some pulled.
POOL = [
    cand(1, 10, "a", pulled_days_ago=1),
    cand(2, 8, "b"),
    cand(3, 6, "c", pulled_days_ago=5),
    cand(4, 4, "d", pulled_days_ago=9.5),
    cand(5, 2, "e"),
]


def ids(found: list[Candidate]) -> list[int]:
    return sorted(c.artifact_id for c in found)


@pytest.mark.parametrize(
    ("template", "value", "expected"),
    [
        ("always", None, [1, 2, 3, 4, 5]),
        ("latestPushedK", 0, []),
        ("latestPushedK", 2, [4, 5]),
        ("latestPushedK", 9, [1, 2, 3, 4, 5]),
        ("latestPulledN", 1, [1]),
        ("latestPulledN", 3, [1, 3, 4]),
        # Never-pulled artifacts fill the rest, newest pushed first (as Harbor does).
        ("latestPulledN", 4, [1, 3, 4, 5]),
        # Active = latest of push and pull: 1 (pulled 1d), 5 (pushed 2d), 4 (pushed 4d).
        ("latestActiveK", 3, [1, 4, 5]),
        ("latestActiveK", 1, [1]),
        ("nDaysSinceLastPush", 5, [4, 5]),
        ("nDaysSinceLastPush", 0, []),
        ("nDaysSinceLastPush", 10, [1, 2, 3, 4, 5]),
        ("nDaysSinceLastPull", 5, [1, 3]),
        ("nDaysSinceLastPull", 10, [1, 3, 4]),
        ("nDaysSinceLastPull", 0, []),
    ],
)
def test_each_template_keeps_what_it_says(
    template: str, value: int | None, expected: list[int]
) -> None:
    assert ids(kept_by_template(rule(template, value), POOL, NOW)) == expected
    assert kept_ids([rule(template, value)], POOL) == expected


def test_ties_are_broken_by_the_newer_artifact() -> None:
    twins = [cand(1, 3, "x"), cand(2, 3, "y"), cand(3, 3, "z")]
    assert ids(kept_by_template(rule("latestPushedK", 2), twins, NOW)) == [2, 3]


def test_a_re_tag_counts_as_a_push_and_a_tag_pull_as_a_pull() -> None:
    old = Candidate(
        1,
        "sha256:1",
        days_ago(30),
        None,
        (TagFacts("old", days_ago(30)), TagFacts("fresh", days_ago(1), days_ago(0.5))),
    )
    assert old.pushed == days_ago(1)
    assert old.pulled == days_ago(0.5)
    assert old.active == days_ago(0.5)
    assert ids(kept_by_template(rule("nDaysSinceLastPush", 2), [old], NOW)) == [1]


# --- the decision --------------------------------------------------------------------------


def decisions(rules: list[Rule], candidates: list[Candidate], **kw: Any) -> dict[int, Decision]:
    return {d.candidate.artifact_id: d for d in evaluate(rules, "app", candidates, NOW, **kw)}


def test_rules_are_or_combined() -> None:
    rules = [rule("latestPushedK", 1, 1), rule("nDaysSinceLastPull", 2, 2)]
    assert kept_ids(rules, POOL) == [1, 5]
    found = decisions(rules, POOL)
    assert found[1].kept_tags == {"a": "rule 2"}
    assert found[5].kept_tags == {"e": "rule 1"}
    assert found[2].removed_tags == ["b"] and not found[2].keep_artifact


def test_a_rule_keeps_only_the_tags_it_selected() -> None:
    multi = [cand(1, 1, "v1", "latest", "tmp")]
    found = decisions([rule("always", tag="{v1,latest}")], multi)[1]
    assert found.keep_artifact
    assert found.kept_tags == {"v1": "rule 1", "latest": "rule 1"}
    assert found.removed_tags == ["tmp"]


def test_untagged_artifacts_go_unless_a_rule_takes_them() -> None:
    pool = [cand(1, 1, "v1"), cand(2, 5), cand(3, 1)]
    assert kept_ids([rule("always")], pool) == [1]
    assert kept_ids([rule("always", untagged=True)], pool) == [1, 2, 3]
    assert kept_ids([rule("latestPushedK", 2, untagged=True)], pool) == [1, 3]
    assert decisions([rule("always", untagged=True)], pool)[2].kept_by == [1]


def test_immutable_tags_stay_and_keep_their_artifact() -> None:
    pool = [cand(1, 9, "release-1", "tmp"), cand(2, 8, "tmp2"), cand(3, 1, "v3")]
    found = decisions(
        [rule("latestPushedK", 1)], pool, immutable=lambda tag: tag.startswith("release")
    )
    assert found[1].keep_artifact
    assert found[1].kept_tags == {"release-1": "immutable"}
    assert found[1].immutable_tags == ["release-1"]
    assert found[1].removed_tags == ["tmp"]
    assert not found[2].keep_artifact
    assert found[3].kept_tags == {"v3": "rule 1"}


def test_rules_of_other_repositories_and_disabled_rules_keep_nothing() -> None:
    elsewhere = rule("always", repo="other/**")
    off = rule("always", 2, disabled=True, tag="a")
    assert kept_ids([elsewhere, off], POOL) == []
    assert kept_ids([rule("always", repo="app")], POOL) == [1, 2, 3, 4, 5]


def test_describe_names_template_value_and_selectors() -> None:
    text = rule("latestPushedK", 3, repo="app", tag="v*", untagged=True).describe()
    assert "most recently pushed 3 artifacts" in text
    assert "repoMatches 'app'" in text and "matches 'v*' (with untagged)" in text

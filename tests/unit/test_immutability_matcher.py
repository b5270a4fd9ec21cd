"""The immutable-tag matcher: doublestar patterns, selectors, rules; hostile patterns stay fast."""

from __future__ import annotations

import time

import pytest

from dockyard.immutability.matcher import (
    MAX_NESTING,
    MAX_PATTERN,
    Pattern,
    PatternError,
    Rule,
    Selector,
    match,
    protecting_rule,
)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        # literals
        ("app", "app", True),
        ("app", "apps", False),
        ("app", "ap", False),
        ("", "", True),
        ("", "a", False),
        # * stays inside one path segment
        ("*", "app", True),
        ("*", "", True),
        ("*", "team/app", False),
        ("team/*", "team/app", True),
        ("team/*", "team/app/web", False),
        ("v*", "v1.0", True),
        ("v*", "1.0", False),
        ("*-rc", "1.0-rc", True),
        ("*.*.*", "1.2.3", True),
        ("*.*.*", "1.2", False),
        # ** crosses segments
        ("**", "", True),
        ("**", "app", True),
        ("**", "team/app/web", True),
        ("team/**", "team/app/web", True),
        ("team/**", "team", True),
        ("team/**", "teams/app", False),
        ("**/web", "web", True),
        ("**/web", "team/app/web", True),
        ("**/web", "team/appweb", False),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/b", True),
        ("a/**/b", "a/x/y/z/b", True),
        ("a/**/b", "a/xb", False),
        ("**/**/**", "a/b/c/d", True),
        ("**/**/**", "", True),
        ("lib**", "lib/x/y", True),
        # ? is one character, never /
        ("v?", "v1", True),
        ("v?", "v12", False),
        ("v?", "v", False),
        ("a?b", "a/b", False),
        # {a,b} alternatives, nested, empty
        ("{v1,v2}", "v1", True),
        ("{v1,v2}", "v2", True),
        ("{v1,v2}", "v3", False),
        ("{v1,v2}.*", "v2.7", True),
        ("{prod,stage}-{a,b{1,2}}", "stage-b2", True),
        ("{prod,stage}-{a,b{1,2}}", "stage-b3", False),
        ("v{,-rc}", "v", True),
        ("v{,-rc}", "v-rc", True),
        ("{**/web,api}", "x/y/web", True),
        ("{**/web,api}", "api", True),
        ("{**/web,api}", "x/api", False),
        # classes and escapes
        ("[abc]", "b", True),
        ("[abc]", "d", False),
        ("[a-c]x", "cx", True),
        ("[!a-c]x", "dx", True),
        ("[!a-c]x", "ax", False),
        ("[^a]", "b", True),
        ("[]]", "]", True),
        ("[!/]", "/", False),
        ("\\*", "*", True),
        ("\\*", "a", False),
        ("\\{a,b\\}", "{a,b}", True),
        ("a,b", "a,b", True),
        # characters that mean something in regular expressions mean nothing here
        ("a.b", "axb", False),
        ("a+", "aa", False),
        ("(a|b)", "(a|b)", True),
        ("^$", "^$", True),
    ],
)
def test_patterns(pattern: str, name: str, expected: bool) -> None:
    assert match(pattern, name) is expected


@pytest.mark.parametrize(
    "pattern",
    ["{a,b", "a}", "[abc", "[", "x\\", "[z-a]", "{a,{b,c}", "a" * (MAX_PATTERN + 1)],
)
def test_invalid_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError):
        Pattern(pattern)


def test_brace_nesting_is_capped() -> None:
    deep = "{" * MAX_NESTING + "a" + "}" * MAX_NESTING
    assert Pattern(deep).matches("a")
    deeper = "{" * (MAX_NESTING + 1) + "a" + "}" * (MAX_NESTING + 1)
    with pytest.raises(PatternError, match="nested"):
        Pattern(deeper)


@pytest.mark.parametrize(
    ("pattern", "name"),
    [
        ("*a" * 120, "a" * 250 + "b"),
        ("**" + "/**" * 80, "a/" * 120 + "b"),
        ("{a,b}" * 50, "a" * 49 + "c"),
        ("{a,a}" * 50, "a" * 50),
        ("{{{{a,aa},aaa},aaaa},b}" * 10 + "c", "a" * 200),
        ("**a**a**a**a**a**a**a**a**a**a**a**a**b", "a" * 255),
        ("?*" * 100, "x" * 255 + "/"),
    ],
)
def test_hostile_patterns_match_in_linear_time(pattern: str, name: str) -> None:
    started = time.perf_counter()
    compiled = Pattern(pattern[:MAX_PATTERN])
    for _ in range(5):
        compiled.matches(name)
    assert time.perf_counter() - started < 1.0


def test_hostile_pattern_answers_are_still_right() -> None:
    assert Pattern("{a,a}" * 50).matches("a" * 50)
    assert not Pattern("{a,b}" * 50).matches("a" * 49 + "c")
    assert not Pattern("*a" * 120).matches("a" * 250 + "b")
    assert Pattern("*a" * 120).matches("a" * 250)


def test_selectors_include_and_exclude() -> None:
    assert Selector("repoMatches", "team/**").selects("team/app")
    assert not Selector("repoExcludes", "team/**").selects("team/app")
    assert Selector("repoExcludes", "team/**").selects("other/app")
    assert Selector("matches", "v*").selects("v1")
    assert not Selector("excludes", "v*").selects("v1")
    assert Selector("excludes", "latest").selects("v1")


def test_a_rule_needs_both_its_repository_and_its_tag() -> None:
    rule = Rule(7, (Selector("repoMatches", "prod/**"),), (Selector("matches", "v*"),))
    assert rule.protects("prod/api", "v1")
    assert not rule.protects("dev/api", "v1")
    assert not rule.protects("prod/api", "latest")
    assert "rule 7" in rule.describe() and "prod/**" in rule.describe()


def test_excluding_rules_and_the_first_match() -> None:
    everything_but_latest = Rule(
        1, (Selector("repoMatches", "**"),), (Selector("excludes", "latest"),)
    )
    not_sandbox = Rule(2, (Selector("repoExcludes", "sandbox"),), (Selector("matches", "**"),))
    rules = [everything_but_latest, not_sandbox]
    assert protecting_rule(rules, "app", "v1") is everything_but_latest
    assert protecting_rule(rules, "app", "latest") is not_sandbox
    assert protecting_rule(rules, "sandbox", "latest") is None
    assert protecting_rule([], "app", "v1") is None

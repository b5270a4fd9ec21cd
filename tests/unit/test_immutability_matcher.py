"""The immutable-tag matcher: doublestar patterns, selectors, rules; hostile patterns stay fast."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from dockyard.immutability.matcher import (
    MAX_NESTING,
    MAX_PATTERN,
    Pattern,
    PatternError,
    Rule,
    RuleSet,
    Selector,
    _Automaton,
    _Parser,
    check_pattern,
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


# --- the fast form agrees with the automaton, and is cheap ---------------------------------

_ATOMS = ["a", "b", "/", "*", "**", "?", "[ab]", "[!a]", "[*-0]", "[/]", "\\*", "."]


def _random_pattern(rng: random.Random, depth: int = 0) -> str:
    out = ""
    for _ in range(rng.randint(0, 8)):
        if rng.random() < 0.15 and depth < 2:
            out += "{" + ",".join(_random_pattern(rng, depth + 1) for _ in range(3)) + "}"
        else:
            out += rng.choice(_ATOMS)
    return out


@pytest.mark.parametrize("seed", range(2))
def test_the_fast_form_answers_as_the_automaton_does(seed: int) -> None:
    """Random patterns against random names, the regular expressions against the automaton
    (the former matcher, kept for stored patterns past the bounds)."""
    rng = random.Random(seed)
    checked = 0
    for _ in range(1500):
        text = _random_pattern(rng)
        try:
            fast = Pattern(text)
        except PatternError:
            continue
        slow = _Automaton(_Parser(text).parse())
        for _ in range(12):
            name = "".join(rng.choice("ab/*.0") for _ in range(rng.randint(0, 16)))
            assert fast.matches(name) is slow.matches(name), (text, name)
            checked += 1
    assert checked > 10_000


def _worst_patterns() -> list[str]:
    """Patterns as long as allowed, each built to make a matcher work hard on 128-char tags."""
    return [
        ("*a" * MAX_PATTERN)[:MAX_PATTERN],
        ("**a" * MAX_PATTERN)[:MAX_PATTERN],
        ("?*" * MAX_PATTERN)[:MAX_PATTERN],
        "*" + "a" * 60 + "b*" + "a" * 60 + "b",
        "*" + "?" * 100 + "b*",
        "*" + "[a-z]" * 40 + "b*",
        "*" + "a?" * 30 + "b*" + "a?" * 30 + "b*",
        "{a,aa,aaa,aaaa}{a,b,c,d}*" + "a" * 20 + "b",
        "{a,b}" * 4 + "*a" * 14,
        "*" + "{" + ",".join("a" * 20 + str(i) for i in range(10)) + "}*",
        ("*a*b" * MAX_PATTERN)[:MAX_PATTERN],
        "*" + "a" * 126 + "b",
        "*[!b]" * 50,
        "*a" * 40 + "*b" * 40,
        "{*a,*b}" * 4 + "*c",
    ]


def test_fifteen_worst_rules_over_a_hundred_tags_cost_under_50ms_of_cpu() -> None:
    """Issue 13's measure: a page of 100 artifacts (one 128-character tag each) under 15
    rules of the longest, hardest patterns. 13.8 s before the regular expressions."""
    patterns = _worst_patterns()
    for pattern in patterns:
        assert check_pattern(pattern).bounded, pattern
    rules = RuleSet(
        Rule(
            i,
            (Selector("repoMatches", "**"),),
            (Selector("matches", patterns[i]),),
        )
        for i in range(15)
    )
    tags = ["a" * 127 + "c", "ab" * 63 + "cc", "a" * 64 + "b" * 64, "x" * 128]
    tags = [tags[i % len(tags)][: 128 - len(str(i))] + str(i) for i in range(100)]
    best = min(_cpu(lambda: [rules.protecting("team/app", tag) for tag in tags]) for _ in range(3))
    assert best < 0.050, f"{best * 1000:.1f} ms of CPU"


def _cpu(work: Callable[[], object]) -> float:
    started = time.process_time()
    work()
    return time.process_time() - started


@pytest.mark.parametrize("pattern", [_worst_patterns()[i] for i in (0, 3, 4, 7, 10)])
def test_one_match_costs_microseconds_not_milliseconds(pattern: str) -> None:
    compiled = Pattern(pattern)
    name = "a" * 127 + "c"
    best = min(_cpu(lambda: [compiled.matches(name) for _ in range(100)]) for _ in range(3))
    assert best / 100 < 0.001, f"{best * 10:.2f} ms a match"


@pytest.mark.parametrize("pattern", ["{a,b}" * 5, "*" + "{a,b}" * 3 + "c" * 200])
def test_new_patterns_past_the_alternatives_bound_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError, match="alternatives"):
        check_pattern(pattern)
    # ...yet a stored one still matches (by the automaton)
    assert not Pattern(pattern).bounded
    assert Pattern(pattern).matches("a" * 5) is (pattern == "{a,b}" * 5)


def test_a_rule_set_decides_each_repository_once() -> None:
    rules = RuleSet([Rule(1, (Selector("repoMatches", "team/**"),), (Selector("matches", "v*"),))])
    assert rules.protecting("team/app", "v1") is rules.rules[0]
    assert rules.protecting("other/app", "v1") is None
    assert rules.protecting("team/app", "latest") is None
    assert set(rules._in_scope) == {"team/app", "other/app"}

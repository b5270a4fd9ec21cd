"""Harbor's immutable-tag selectors: doublestar patterns and the rules built of them. Pure.

Patterns follow doublestar: ``*`` matches any run of characters except ``/``,
``**`` any run including ``/`` (``a/**/b`` also matches ``a/b``), ``?`` one
character except ``/``, ``[abc]``, ``[a-z]``, ``[!x]`` one character of a class,
``{a,b}`` either alternative (nestable), ``\\x`` the character ``x``.

Braces are expanded (at most ``MAX_ALTERNATIVES`` alternatives, ``MAX_EXPANDED``
characters in all) and each alternative becomes a regular expression in which every
fixed run between stars is placed at its leftmost fit inside an atomic group. The
first fit always leaves the most room for what follows, so nothing is lost, and the
regex engine cannot backtrack into earlier gaps: a match costs at most
``len(name) x MAX_EXPANDED`` engine steps, a microsecond or so for a tag. Patterns
are capped at ``MAX_PATTERN`` characters and ``MAX_NESTING`` levels of braces; a stored
pattern past the alternatives bounds (refused for new rules by ``check_pattern``)
still matches, by the former set-of-states automaton.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

MAX_PATTERN = 256
MAX_NESTING = 16
MAX_ALTERNATIVES = 16
"""Brace alternatives a new pattern may expand to (``{a,b}{c,d}`` is four)..."""
MAX_EXPANDED = 2 * MAX_PATTERN
"""...and the characters of all its alternatives together: matching costs at most
``len(name) x MAX_EXPANDED`` steps of the regex engine."""

REPOSITORY_KIND = "doublestar"
REPOSITORY_DECORATIONS = ("repoMatches", "repoExcludes")
TAG_KIND = "doublestar"
TAG_DECORATIONS = ("matches", "excludes")


class PatternError(ValueError):
    """A pattern that cannot be compiled; the message says why."""


# ---- parsing: pattern text -> a tree of nodes -------------------------------------------


@dataclass(frozen=True, slots=True)
class _Char:
    char: str


@dataclass(frozen=True, slots=True)
class _Class:
    negated: bool
    ranges: tuple[tuple[str, str], ...]

    def accepts(self, char: str) -> bool:
        if char == "/":
            return False
        inside = any(low <= char <= high for low, high in self.ranges)
        return inside != self.negated


class _One:
    """``?``: any one character but ``/``."""


class _Star:
    """``*``: any run of characters without ``/``."""


class _GlobStar:
    """``**``: any run of characters."""


@dataclass(frozen=True, slots=True)
class _Alt:
    branches: tuple[tuple[_Node, ...], ...]


_Node = _Char | _Class | _One | _Star | _GlobStar | _Alt
_ONE, _STAR, _GLOBSTAR = _One(), _Star(), _GlobStar()


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.text = pattern
        self.pos = 0

    def parse(self) -> tuple[_Node, ...]:
        sequence, _ = self._sequence(depth=0)
        return sequence

    def _sequence(self, depth: int) -> tuple[tuple[_Node, ...], str | None]:
        """Parse until the end, or (inside braces) an unescaped ``,`` or ``}``."""
        nodes: list[_Node] = []
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if depth and char in ",}":
                self.pos += 1
                return tuple(nodes), char
            if char == "}":
                raise PatternError(f"unmatched '}}' at position {self.pos}")
            if char == "\\":
                if self.pos + 1 >= len(text):
                    raise PatternError("the pattern ends with an unfinished escape '\\'")
                nodes.append(_Char(text[self.pos + 1]))
                self.pos += 2
            elif char == "?":
                nodes.append(_ONE)
                self.pos += 1
            elif char == "*":
                self._stars(nodes)
            elif char == "[":
                nodes.append(self._class())
            elif char == "{":
                nodes.append(self._alternatives(depth + 1))
            else:
                nodes.append(_Char(char))
                self.pos += 1
        if depth:
            raise PatternError("unclosed '{' in the pattern")
        return tuple(nodes), None

    def _stars(self, nodes: list[_Node]) -> None:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] == "*":
            self.pos += 1
        if self.pos - start == 1:
            nodes.append(_STAR)
            return
        # A whole "**" path component matches zero or more components.
        after_slash = start == 0 or self.text[start - 1] == "/"
        at_end = self.pos == len(self.text)
        if after_slash and not at_end and self.text[self.pos] == "/":
            self.pos += 1  # "**/": nothing, or anything ending in "/"
            nodes.append(_Alt(((), (_GLOBSTAR, _Char("/")))))
        elif after_slash and at_end and nodes and nodes[-1] == _Char("/"):
            nodes.pop()  # "/**" at the end: nothing, or "/" and anything
            nodes.append(_Alt(((), (_Char("/"), _GLOBSTAR))))
        else:
            nodes.append(_GLOBSTAR)

    def _class(self) -> _Class:
        text = self.text
        self.pos += 1
        negated = self.pos < len(text) and text[self.pos] in "!^"
        if negated:
            self.pos += 1
        ranges: list[tuple[str, str]] = []
        first = True
        while True:
            if self.pos >= len(text):
                raise PatternError("unclosed '[' in the pattern")
            char = text[self.pos]
            if char == "]" and not first:
                self.pos += 1
                break
            first = False
            low = self._class_char()
            high = low
            if self.pos + 1 < len(text) and text[self.pos] == "-" and text[self.pos + 1] != "]":
                self.pos += 1
                high = self._class_char()
                if high < low:
                    raise PatternError(f"bad range {low}-{high} in a character class")
            ranges.append((low, high))
        return _Class(negated, tuple(ranges))

    def _class_char(self) -> str:
        text = self.text
        if text[self.pos] == "\\":
            self.pos += 1
            if self.pos >= len(text):
                raise PatternError("unclosed '[' in the pattern")
        char = text[self.pos]
        self.pos += 1
        return char

    def _alternatives(self, depth: int) -> _Alt:
        if depth > MAX_NESTING:
            raise PatternError(f"braces nested deeper than {MAX_NESTING} levels")
        self.pos += 1
        branches: list[tuple[_Node, ...]] = []
        while True:
            branch, closer = self._sequence(depth)
            branches.append(branch)
            if closer == "}":
                return _Alt(tuple(branches))


# ---- the automaton ------------------------------------------------------------------------

_SPLIT, _CHAR, _CLASS, _ONE_STATE, _ANY, _MATCH = range(6)


class _Automaton:
    """A pattern as a nondeterministic automaton run over the name by keeping the set of live
    states: ``len(name) x states`` Python steps whatever the pattern. The fallback for a
    stored pattern past ``MAX_ALTERNATIVES`` or ``MAX_EXPANDED``, which new rules refuse."""

    def __init__(self, tree: Sequence[_Node]) -> None:
        self._kind: list[int] = []
        self._arg: list[object] = []
        self._next: list[list[int]] = []
        match = self._state(_MATCH, None, [])
        self._start = self._compile(tree, match)

    def _state(self, kind: int, arg: object, targets: list[int]) -> int:
        self._kind.append(kind)
        self._arg.append(arg)
        self._next.append(targets)
        return len(self._kind) - 1

    def _compile(self, sequence: Sequence[_Node], follow: int) -> int:
        for node in reversed(sequence):
            follow = self._compile_node(node, follow)
        return follow

    def _compile_node(self, node: _Node, follow: int) -> int:
        if isinstance(node, _Char):
            return self._state(_CHAR, node.char, [follow])
        if isinstance(node, _Class):
            return self._state(_CLASS, node, [follow])
        if isinstance(node, _One):
            return self._state(_ONE_STATE, None, [follow])
        if isinstance(node, _Star | _GlobStar):
            loop_kind = _ONE_STATE if isinstance(node, _Star) else _ANY
            split = self._state(_SPLIT, None, [follow])
            self._next[split].append(self._state(loop_kind, None, [split]))
            return split
        targets = [self._compile(branch, follow) for branch in node.branches]
        return self._state(_SPLIT, None, targets)

    def _closure(self, states: Iterable[int]) -> set[int]:
        seen: set[int] = set()
        stack = list(states)
        while stack:
            state = stack.pop()
            if state in seen:
                continue
            seen.add(state)
            if self._kind[state] == _SPLIT:
                stack.extend(self._next[state])
        return seen

    def _accepts(self, state: int, char: str) -> bool:
        kind = self._kind[state]
        if kind == _CHAR:
            return self._arg[state] == char
        if kind == _ONE_STATE:
            return char != "/"
        if kind == _ANY:
            return True
        if kind == _CLASS:
            cls = self._arg[state]
            assert isinstance(cls, _Class)
            return cls.accepts(char)
        return False

    def matches(self, name: str) -> bool:
        current = self._closure((self._start,))
        for char in name:
            following = [self._next[state][0] for state in current if self._accepts(state, char)]
            if not following:
                return False
            current = self._closure(following)
        return any(self._kind[state] == _MATCH for state in current)


# ---- the fast form: braces expanded, each alternative a regular expression -----------------

_Token = _Char | _Class | _One | _Star | _GlobStar


def _expand(sequence: Sequence[_Node], limit: int) -> list[tuple[_Token, ...]] | None:
    """Every brace-free alternative of ``sequence`` (stars merged), or None past ``limit``."""
    results: list[tuple[_Token, ...]] = [()]
    for node in sequence:
        if isinstance(node, _Alt):
            options: list[tuple[_Token, ...]] = []
            for branch in node.branches:
                expanded = _expand(branch, limit)
                if expanded is None:
                    return None
                options.extend(expanded)
        else:
            options = [(node,)]
        if len(results) * len(options) > limit:
            return None
        results = [head + tail for head in results for tail in options]
        if sum(map(len, results)) > MAX_EXPANDED:
            return None
    return list(dict.fromkeys(_merge_stars(tokens) for tokens in results))


def _merge_stars(tokens: tuple[_Token, ...]) -> tuple[_Token, ...]:
    """``*`` next to ``*`` is one ``*``; next to ``**`` it is ``**``; and ``*?`` is ``?*``
    (both: one or more characters but ``/``), so ``?*?*?*`` becomes ``???*``, one star."""
    merged: list[_Token] = []
    for token in tokens:
        if isinstance(token, _One) and merged and isinstance(merged[-1], _Star):
            merged.insert(len(merged) - 1, token)
            continue
        if isinstance(token, _Star | _GlobStar) and merged:
            last = merged[-1]
            if isinstance(last, _Star | _GlobStar):
                merged[-1] = _GLOBSTAR if _GLOBSTAR in (last, token) else _STAR
                continue
        merged.append(token)
    return tuple(merged)


def _char_regex(token: _Token) -> str:
    if isinstance(token, _Char):
        return re.escape(token.char)
    if isinstance(token, _One):
        return "[^/]"
    if isinstance(token, _Class):
        if token.negated:
            return f"[^/{_class_ranges(token.ranges)}]"
        # a class never matches "/": cut it out of the ranges rather than test for it
        ranges = [part for low, high in token.ranges for part in _without_slash(low, high)]
        return f"[{_class_ranges(ranges)}]" if ranges else "(?!)"
    raise AssertionError(token)


def _without_slash(low: str, high: str) -> list[tuple[str, str]]:
    if not low <= "/" <= high:
        return [(low, high)]
    return [(a, b) for a, b in ((low, "."), ("0", high)) if a <= b]


def _class_ranges(ranges: Iterable[tuple[str, str]]) -> str:
    return "".join(
        re.escape(low) if low == high else f"{re.escape(low)}-{re.escape(high)}"
        for low, high in ranges
    )


def _segments(tokens: Sequence[_Token]) -> list[str]:
    """The fixed-length runs between stars, as regular expressions (stars merged already,
    so only the first and last can be empty)."""
    segments = [""]
    for token in tokens:
        if isinstance(token, _Star | _GlobStar):
            segments.append("")
        else:
            segments[-1] += _char_regex(token)
    return segments


def _greedy(segments: Sequence[str], any_char: str, to_end: bool) -> str:
    """Segments joined by star gaps, each placed at its leftmost fit and never reconsidered
    (an atomic group): the first fit always leaves the most room for the rest, so nothing is
    lost, and the engine cannot backtrack into earlier gaps. Each segment is looked for once
    along the name: ``O(len(name) x len(pattern))`` at worst, in the regex engine."""
    if len(segments) == 1:
        return segments[0] + (r"\Z" if to_end else "")
    middle = "".join(f"(?>{any_char}*?{segment})" for segment in segments[1:-1])
    if to_end:
        return f"{segments[0]}{middle}{any_char}*{segments[-1]}\\Z"
    last = f"(?>{any_char}*?{segments[-1]})" if segments[-1] else ""
    return f"{segments[0]}{middle}{last}"


class _Chain:
    """One brace-free alternative, for names with ``/``: the parts between ``**`` each
    placed at their earliest end (a ``**`` gap takes anything, so that is always best), the
    last one anchored at the end by matching it reversed against the reversed name."""

    def __init__(self, tokens: tuple[_Token, ...]) -> None:
        parts: list[list[_Token]] = [[]]
        for token in tokens:
            if isinstance(token, _GlobStar):
                parts.append([])
            else:
                parts[-1].append(token)
        if len(parts) == 1:
            self.whole: re.Pattern[str] | None = re.compile(
                _greedy(_segments(parts[0]), "[^/]", to_end=True), re.DOTALL
            )
            return
        self.whole = None
        self.first = re.compile(_greedy(_segments(parts[0]), "[^/]", False), re.DOTALL)
        self.middle = [
            re.compile(_greedy(_segments(part), "[^/]", False), re.DOTALL)
            for part in parts[1:-1]
            if part
        ]
        reversed_last = _greedy(_segments(parts[-1][::-1]), "[^/]", False)
        self.last = re.compile(reversed_last, re.DOTALL) if parts[-1] else None

    def matches(self, name: str, reversed_name: str) -> bool:
        if self.whole is not None:
            return self.whole.match(name) is not None
        found = self.first.match(name)
        if found is None:
            return False
        end = found.end()
        for part in self.middle:
            found = part.search(name, end)
            if found is None:
                return False
            end = found.end()
        if self.last is None:
            return True
        return self.last.match(reversed_name, 0, len(name) - end) is not None


class Pattern:
    """A compiled doublestar pattern; ``matches(name)`` costs at most ``len(name) x
    len(pattern)`` steps of the regex engine per alternative, with no backtracking blow-up.

    Braces are expanded (at most ``MAX_ALTERNATIVES`` alternatives of ``MAX_EXPANDED``
    characters in all). A name without ``/``
    (every tag) is matched by one regular expression of all alternatives, in which ``*``
    and ``**`` are the same; a name with ``/`` by each alternative's ``_Chain``."""

    def __init__(self, pattern: str) -> None:
        if len(pattern) > MAX_PATTERN:
            raise PatternError(f"the pattern is longer than {MAX_PATTERN} characters")
        self.pattern = pattern
        tree = _Parser(pattern).parse()
        alternatives = _expand(tree, MAX_ALTERNATIVES)
        self.bounded = alternatives is not None
        """False for a pattern past ``MAX_ALTERNATIVES`` or ``MAX_EXPANDED`` (refused for
        new rules; a stored one still matches, by the slower automaton)."""
        self._automaton = _Automaton(tree) if alternatives is None else None
        self._flat: re.Pattern[str] | None = None
        self._chains: list[_Chain] = []
        if alternatives is None:
            return
        flat = [
            _greedy(_segments(tokens), ".", to_end=True)
            for tokens in alternatives
            if _Char("/") not in tokens
        ]
        if flat:
            self._flat = re.compile("|".join(f"(?:{body})" for body in flat), re.DOTALL)
        self._chains = [_Chain(tokens) for tokens in alternatives]

    def matches(self, name: str) -> bool:
        if self._automaton is not None:
            return self._automaton.matches(name)
        if "/" not in name:
            return self._flat is not None and self._flat.match(name) is not None
        reversed_name = name[::-1]
        return any(chain.matches(name, reversed_name) for chain in self._chains)


def check_pattern(pattern: str) -> Pattern:
    """The compiled pattern if a new rule may use it: within the length, nesting and
    alternatives bounds. Raises ``PatternError`` saying which bound it passes."""
    compiled = compile_pattern(pattern)
    if not compiled.bounded:
        raise PatternError(
            f"the pattern's braces make more than {MAX_ALTERNATIVES} alternatives"
            f" or more than {MAX_EXPANDED} characters of them"
        )
    return compiled


@lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> Pattern:
    """The compiled ``pattern`` (cached: rules are read on every push); raises ``PatternError``."""
    return Pattern(pattern)


def match(pattern: str, name: str) -> bool:
    return compile_pattern(pattern).matches(name)


# ---- rules --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selector:
    decoration: str
    pattern: str

    def selects(self, name: str) -> bool:
        """Whether ``name`` passes: ``…Matches`` keeps matches, ``…Excludes`` the rest."""
        hit = match(self.pattern, name)
        return not hit if self.decoration.endswith(("Excludes", "excludes")) else hit


@dataclass(frozen=True, slots=True)
class Rule:
    """An immutable-tag rule: every repository selector and every tag selector must pass."""

    id: int
    repositories: tuple[Selector, ...]
    tags: tuple[Selector, ...]

    def describe(self) -> str:
        parts = [f"repositories {s.decoration} {s.pattern!r}" for s in self.repositories]
        parts += [f"tags {s.decoration} {s.pattern!r}" for s in self.tags]
        return f"rule {self.id} ({', '.join(parts)})"

    def protects(self, repository: str, tag: str) -> bool:
        """``repository`` is the name inside the project (``app``, not ``library/app``)."""
        return all(s.selects(repository) for s in self.repositories) and all(
            s.selects(tag) for s in self.tags
        )


def protecting_rule(rules: Iterable[Rule], repository: str, tag: str) -> Rule | None:
    """The first of ``rules`` that makes ``tag`` in ``repository`` immutable, if any."""
    for rule in rules:
        if rule.protects(repository, tag):
            return rule
    return None


class RuleSet:
    """One evaluation of ``rules`` over many tags: each pattern compiled once, and each
    rule's repository selectors decided once per repository, not once per tag."""

    _MAX_REMEMBERED = 4096

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(rules)
        self._patterns = {
            s.pattern: compile_pattern(s.pattern)
            for rule in self.rules
            for s in rule.repositories + rule.tags
        }
        self._in_scope: dict[str, tuple[Rule, ...]] = {}
        self.bounded = all(pattern.bounded for pattern in self._patterns.values())
        """False when a stored pattern needs the slow automaton (see ``Pattern.bounded``)."""

    def __len__(self) -> int:
        return len(self.rules)

    def _selects(self, selector: Selector, name: str) -> bool:
        hit = self._patterns[selector.pattern].matches(name)
        return not hit if selector.decoration.endswith(("Excludes", "excludes")) else hit

    def _rules_for(self, repository: str) -> tuple[Rule, ...]:
        found = self._in_scope.get(repository)
        if found is None:
            found = tuple(
                rule
                for rule in self.rules
                if all(self._selects(s, repository) for s in rule.repositories)
            )
            if len(self._in_scope) >= self._MAX_REMEMBERED:
                self._in_scope.clear()
            self._in_scope[repository] = found
        return found

    def protecting(self, repository: str, tag: str) -> Rule | None:
        """The first rule that makes ``tag`` in ``repository`` (name inside the project)
        immutable, if any."""
        for rule in self._rules_for(repository):
            if all(self._selects(s, tag) for s in rule.tags):
                return rule
        return None

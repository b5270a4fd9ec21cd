"""Harbor's immutable-tag selectors: doublestar patterns and the rules built of them. Pure.

Patterns follow doublestar: ``*`` matches any run of characters except ``/``,
``**`` any run including ``/`` (``a/**/b`` also matches ``a/b``), ``?`` one
character except ``/``, ``[abc]``, ``[a-z]``, ``[!x]`` one character of a class,
``{a,b}`` either alternative (nestable), ``\\x`` the character ``x``.

A pattern compiles to a small nondeterministic automaton that is run over the
name by keeping the set of live states, so matching costs at most
``len(name) x states`` steps whatever the pattern: no backtracking, no blow-up
for ``{a,b}{a,b}…`` or ``**/**/**``. Patterns are capped at ``MAX_PATTERN``
characters and ``MAX_NESTING`` levels of braces.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

MAX_PATTERN = 256
MAX_NESTING = 16

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


class Pattern:
    """A compiled doublestar pattern; ``matches(name)`` runs in linear time."""

    def __init__(self, pattern: str) -> None:
        if len(pattern) > MAX_PATTERN:
            raise PatternError(f"the pattern is longer than {MAX_PATTERN} characters")
        self.pattern = pattern
        self._kind: list[int] = []
        self._arg: list[object] = []
        self._next: list[list[int]] = []
        match = self._state(_MATCH, None, [])
        self._start = self._compile(_Parser(pattern).parse(), match)

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

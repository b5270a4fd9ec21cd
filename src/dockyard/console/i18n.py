"""The console's languages: one message catalogue per language, and localised dates and sizes.

Catalogues are flat JSON files (``i18n/<code>.json``, plus any part files
``<code>.<part>.json``) mapping a key to a message with ``{name}`` placeholders. The
output is escaped by the templates, never here, so a placeholder may carry user input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

CATALOGUE_DIR = Path(__file__).parent / "i18n"
DEFAULT_LANGUAGE = "en"
LANGUAGES: dict[str, str] = {"en": "English", "zh-CN": "简体中文"}
"""Language code -> its own name, as the switch shows it."""

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def catalogue_path(language: str) -> Path:
    return CATALOGUE_DIR / f"{language.replace('-', '_')}.json"


def load_catalogues() -> dict[str, dict[str, str]]:
    """Each language's ``<code>.json`` merged with its part files ``<code>.<part>.json``.

    A feature's pages may keep their messages in a part file of their own (e.g.
    ``en.jobs.json``) so that several people can add messages without editing one
    file; a key defined twice for one language is an error, not a silent override.
    """
    result: dict[str, dict[str, str]] = {}
    for code in LANGUAGES:
        main = catalogue_path(code)
        merged: dict[str, str] = {}
        for path in [main, *sorted(CATALOGUE_DIR.glob(f"{main.stem}.*.json"))]:
            raw = json.loads(path.read_text("utf-8"))
            if not isinstance(raw, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
            ):
                raise ValueError(f"{path} must map strings to strings")
            twice = sorted(merged.keys() & raw.keys())
            if twice:
                raise ValueError(f"{path} defines {twice[:5]} again")
            merged.update(raw)
        result[code] = merged
    return result


def pick_language(cookie: str | None, accept_language: str | None) -> str:
    """The cookie's language if it names one we have; else the browser's first we have."""
    if cookie in LANGUAGES:
        return cookie
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT_LANGUAGE


class _Blank(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass(frozen=True, slots=True)
class Translator:
    """One language's messages and formats."""

    language: str
    messages: Mapping[str, str]
    fallback: Mapping[str, str]

    def __call__(self, key: str, **args: object) -> str:
        if "n" in args and str(args["n"]) == "1":
            # The singular where a language has one (``<key>.one``): "1 artifact", "1 day".
            key = key + ".one" if (key + ".one") in self.messages else key
        text = self.messages.get(key) or self.fallback.get(key) or key
        return text.format_map(_Blank(args)) if args else text

    def datetime(self, value: datetime | None) -> str:
        if value is None:
            return "—"
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        if self.language == "zh-CN":
            return f"{value.year}年{value.month}月{value.day}日 {value:%H:%M}"
        return f"{_MONTHS[value.month - 1]} {value.day}, {value.year}, {value:%H:%M}"

    def permission_resource(self, resource: str) -> str:
        """A robot permission's resource in words (``robot.resource.<name>``), else its name."""
        return self.messages.get(f"robot.resource.{resource}") or resource

    def permission_action(self, action: str) -> str:
        """A robot permission's action in words (``robot.action.<name>``), else its name."""
        return self.messages.get(f"robot.action.{action}") or action

    def size(self, value: int | None) -> str:
        """Bytes in binary units with the language's number format."""
        if value is None or value < 0:
            return self("common.unlimited") if value == -1 else "—"
        amount = float(value)
        unit = 0
        while amount >= 1024 and unit < len(_UNITS) - 1:
            amount /= 1024
            unit += 1
        number = f"{int(amount):,}" if unit == 0 else f"{amount:,.2f}".rstrip("0").rstrip(".")
        return f"{number}\u00a0{_UNITS[unit]}"  # no-break space: "1.39 KiB" never splits

    def number(self, value: int) -> str:
        return f"{value:,}"

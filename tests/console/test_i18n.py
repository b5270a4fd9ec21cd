"""Every message the console shows exists in English and in 简体中文 (pure; no browser)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dockyard.console import i18n
from dockyard.console.admin import system_catalogue
from dockyard.console.audit_filters import OPERATIONS as AUDIT_OPERATIONS
from dockyard.console.kinds import KINDS
from dockyard.console.navigation import ADMIN_SECTIONS, PROJECT_TABS
from dockyard.console.projects import robot_catalogue
from dockyard.console.scan_state import SEVERITIES
from dockyard.console.web import TEMPLATE_DIR

CONSOLE_DIR = Path(i18n.__file__).parent
LITERAL = re.compile(r"""\bt\(\s*["']([A-Za-z0-9_.\-]+)["']""")
DYNAMIC = re.compile(r"""\bt\(\s*["']([A-Za-z0-9_.\-]+\.)["']\s*~""")
FLASH = re.compile(
    r"""["'](flash\.[a-z_]+|signin\.[a-z_]+|oidc\.[a-z_]+|error\.detail\.[a-z_]+)["']"""
)
# Keys templates build from a prefix and a value, with every value they can take.
EXPANSIONS = {
    "admin.nav.": [entry.key for entry in ADMIN_SECTIONS],
    "artifact.accessory.": ["signature.cosign", "signature.notation", "harbor.sbom", "other"],
    "artifact.kind.": list(KINDS),
    "audit.": ["username", "resource", "resource_type", "operation"],
    "audit.op.": list(AUDIT_OPERATIONS),
    "auth.mode.": ["db_auth", "ldap_auth", "oidc_auth", "uaa_auth", "http_auth"],
    "auth.scope.": ["0", "1", "2"],
    "error.status.": ["400", "401", "403", "404", "409", "412", "413", "429"],
    "project.tab.": [entry.key for entry in PROJECT_TABS],
    "projects.sort.": ["name", "-name", "created", "-created"],
    "role.": ["1", "2", "3", "4", "5"],
    "scan.allowlist_in_force.": ["system", "project"],
    "scan.count.": list(SEVERITIES),
    "scan.severity.": [*SEVERITIES, "None"],
    "settings.pcr.": ["everyone", "adminonly"],
}
ROBOT_FLASHES = ["flash.robot_disabled", "flash.robot_enabled", "flash.robot_deleted"]


def used_keys() -> set[str]:
    keys: set[str] = set(ROBOT_FLASHES) | {"common.unlimited"}
    for template in TEMPLATE_DIR.rglob("*.html"):
        text = template.read_text("utf-8")
        keys |= {key for key in LITERAL.findall(text) if not key.endswith(".")}
        for prefix in DYNAMIC.findall(text):
            assert prefix in EXPANSIONS, f"{template.name}: add the values of {prefix}… here"
            keys |= {prefix + value for value in EXPANSIONS[prefix]}
    for module in CONSOLE_DIR.glob("*.py"):
        keys |= set(FLASH.findall(module.read_text("utf-8")))
    # The robot permission grid names every grantable resource and action in words.
    for resource, actions in (*robot_catalogue(), *system_catalogue()):
        keys.add(f"robot.resource.{resource}")
        keys |= {f"robot.action.{action}" for action in actions}
    # A message's singular (``<key>.one``) is used wherever the message is.
    english = i18n.load_catalogues()["en"]
    keys |= {key + ".one" for key in keys if key + ".one" in english}
    return keys


def test_every_key_used_exists_in_every_language() -> None:
    catalogues = i18n.load_catalogues()
    used = used_keys()
    assert len(used) > 250
    for language, messages in catalogues.items():
        missing = sorted(used - messages.keys())
        assert not missing, f"{language} lacks {missing}"
        assert all(value.strip() for value in messages.values()), language


def test_the_languages_have_the_same_keys_and_placeholders() -> None:
    english, chinese = (i18n.load_catalogues()[code] for code in ("en", "zh-CN"))
    assert english.keys() == chinese.keys()
    placeholder = re.compile(r"\{(\w+)\}")
    for key, text in english.items():
        assert set(placeholder.findall(text)) == set(placeholder.findall(chinese[key])), key


def test_no_unused_keys() -> None:
    unused = sorted(i18n.load_catalogues()["en"].keys() - used_keys())
    assert not unused, f"remove or use {unused}"


@pytest.mark.parametrize(
    ("cookie", "accept", "expected"),
    [
        ("zh-CN", "en", "zh-CN"),
        (None, "zh-TW,zh;q=0.8", "zh-CN"),
        (None, "fr,en-GB;q=0.5", "en"),
        (None, None, "en"),
        ("xx", "de", "en"),
    ],
)
def test_language_choice(cookie: str | None, accept: str | None, expected: str) -> None:
    assert i18n.pick_language(cookie, accept) == expected


def _translator(language: str) -> i18n.Translator:
    catalogues = i18n.load_catalogues()
    return i18n.Translator(language, catalogues[language], catalogues["en"])


def test_dates_and_sizes_are_localised() -> None:
    when = datetime(2026, 3, 7, 9, 5, tzinfo=UTC)
    assert _translator("en").datetime(when) == "Mar 7, 2026, 09:05"
    assert _translator("zh-CN").datetime(when) == "2026年3月7日 09:05"
    # A no-break space between number and unit, so a size never wraps mid-value.
    assert _translator("en").size(1536) == "1.5\u00a0KiB"
    assert _translator("en").size(123) == "123\u00a0B"
    assert _translator("en").size(5 * 1024**3) == "5\u00a0GiB"
    assert _translator("en").size(-1) == "unlimited"
    assert _translator("zh-CN").size(-1) == "无限制"
    assert _translator("en").number(1234567) == "1,234,567"


def test_placeholders_take_arguments_and_missing_ones_stay_visible() -> None:
    t = _translator("en")
    assert t("flash.project_created", name="demo") == "Project demo was created."
    assert t("flash.project_created") == "Project {name} was created."
    assert t("no.such.key") == "no.such.key"


def test_singular_where_the_language_has_one() -> None:
    english, chinese = _translator("en"), _translator("zh-CN")
    assert english("retention.tpl.latest_pushed", n=1) == "retain the most recently pushed artifact"
    assert (
        english("retention.tpl.latest_pushed", n=3) == "retain the most recently pushed 3 artifacts"
    )
    assert english("system.minutes", n="1") == "1 minute"
    assert chinese("retention.tpl.latest_pushed", n=1) == "保留最近推送的 1 个 Artifact"


def test_robot_permissions_in_words() -> None:
    english, chinese = _translator("en"), _translator("zh-CN")
    assert english.permission_resource("notification-policy") == "Webhooks"
    assert english.permission_action("pull") == "Pull"
    assert chinese.permission_resource("repository") == "仓库"
    assert chinese.permission_action("push") == "推送"
    for resource, actions in robot_catalogue():
        assert chinese.permission_resource(resource) != resource
        assert all(chinese.permission_action(action) != action for action in actions)

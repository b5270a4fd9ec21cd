"""Start-time settings and run-time configuration items agree, and a setting given in the
wrong place is refused with a message naming the place where it can be changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.errors import ConfigurationError
from dockyard.settings import RUN_TIME_ITEMS, RUN_TIME_NAMES, Settings, load_settings
from dockyard.system.config import ITEMS


def test_run_time_items_match_the_configuration_items() -> None:
    run_time_only = {
        key
        for key, item in ITEMS.items()
        if item.editable and item.from_settings is None and not item.missing
    }
    assert run_time_only == RUN_TIME_ITEMS
    both = {key for key, item in ITEMS.items() if item.editable and item.from_settings}
    assert set(RUN_TIME_NAMES) == both
    # Each run-time item with a start-time default reads the setting RUN_TIME_NAMES names.
    for key, field in RUN_TIME_NAMES.items():
        default = Settings.model_fields[field].default
        given = default + "x$" if isinstance(default, str) else default + 7
        from_settings = ITEMS[key].from_settings
        assert from_settings is not None
        assert from_settings(Settings(**{field: given})) == given
    # And no run-time item shares its name with a start-time setting (one place each).
    assert not (set(ITEMS) - {"robot_name_prefix"}) & set(Settings.model_fields)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (
            "banner_message: hello",
            "banner_message: not a start-time setting; change it at run "
            "time with PUT /api/v2.0/configurations or the console's Configuration page",
        ),
        ("self_registration: true", "self_registration: not a start-time setting"),
        ("ldap_url: ldap://ldap.example.org", "ldap_url: not a start-time setting"),
        ("ldap_search_password: x", "ldap_search_password: not a start-time setting"),
        ("token_expiration: 45", "the start-time default is token_expiration_minutes"),
        ("session_timeout: 45", "the start-time default is session_timeout_minutes"),
        ("no_such_thing: 1", "no_such_thing: Extra inputs are not permitted"),
    ],
)
def test_a_run_time_item_in_the_settings_file_names_its_place(
    tmp_path: Path, line: str, fragment: str
) -> None:
    config = tmp_path / "dockyard.yml"
    config.write_text(line + "\n")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(config)
    assert fragment in caught.value.message
    assert "\n" not in caught.value.message  # one mistake, one line

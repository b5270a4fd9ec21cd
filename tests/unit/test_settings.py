from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.errors import ConfigurationError
from dockyard.settings import CONFIG_FILE_ENV, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DOCKYARD_PORT",
        "DOCKYARD_EXTERNAL_URL",
        CONFIG_FILE_ENV,
        "DOCKYARD_DATABASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = load_settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 5000)
    assert settings.data_dir == Path("dockyard-data")
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.public_url == "http://127.0.0.1:5000"


def test_env_overrides_yaml_and_options_override_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "dockyard.yml"
    config.write_text("port: 6000\nexternal_url: https://registry.example.com/\nlog-level: debug\n")
    monkeypatch.setenv(CONFIG_FILE_ENV, str(config))
    settings = load_settings()
    assert settings.port == 6000
    assert settings.external_url == "https://registry.example.com"
    assert settings.public_url == "https://registry.example.com"
    assert settings.log_level == "debug"
    monkeypatch.setenv("DOCKYARD_PORT", "7000")
    assert load_settings().port == 7000
    assert load_settings(port=8000).port == 8000


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"port": 70000}, "port"),
        ({"external_url": "registry.example.com"}, "http:// or https://"),
        ({"database_url": "mysql://x"}, "database_url"),
        ({"tls_cert": "/nonexistent.pem"}, "tls_key must be given together"),
        ({"log_level": "chatty"}, "log_level"),
        ({"no_such_setting": 1}, "no_such_setting"),
        ({"trusted_proxies": ["10.0.0.0/8", "proxy.local"]}, "not an IP address or CIDR"),
        ({"auth_recheck_seconds": -1}, "auth_recheck_seconds"),
    ],
)
def test_invalid_settings_say_what_is_wrong(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(**overrides)
    assert fragment in caught.value.message


def test_bad_config_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "bad.yml"
    config.write_text("port: [unclosed\n")
    monkeypatch.setenv(CONFIG_FILE_ENV, str(config))
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_settings()
    config.write_text("- a list\n")
    with pytest.raises(ConfigurationError, match="mapping"):
        load_settings()


def test_trusted_proxies_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_TRUSTED_PROXIES", '["10.0.0.0/8", " ::1 "]')
    assert load_settings().trusted_proxies == ["10.0.0.0/8", "::1"]

"""deploy/compose.yaml: valid against the Compose specification's JSON schema (the copy that
check-jsonschema vendors, ``--builtin-schema vendor.compose-spec``), and coherent: every
DOCKYARD_* variable is a real setting whose value Dockyard accepts once the example .env is
filled in, the services it depends on exist, and the registry is published on loopback only.

No compose engine runs here (no Docker daemon; the stores' images cannot be pulled), so the
stack itself is not started; the image it builds is tested in test_packaging_image.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.deploy_tools import REPO

from dockyard.settings import Settings, load_settings

pytestmark = pytest.mark.e2e

COMPOSE = REPO / "deploy" / "compose.yaml"
ENV_EXAMPLE = REPO / "deploy" / "compose.env.example"


def check_schema(path: Path) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).with_name("check-jsonschema")
    return subprocess.run(
        [str(executable), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def example_env() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}``, as the file has them."""

    def one(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if operator == ":?":
            raise AssertionError(f"{name} is required: {argument}")
        return argument or ""

    text = re.sub(r"(?<!\$)\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, text)
    return text.replace("$$", "$")


def compose(env: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(interpolate(COMPOSE.read_text(), env))
    return data


def test_compose_file_matches_the_compose_spec() -> None:
    result = check_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_is_live(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(
        COMPOSE.read_text().replace("    restart: unless-stopped\n", "    restart: [1]\n", 1)
    )
    assert check_schema(broken).returncode != 0


def test_missing_secrets_are_named() -> None:
    with pytest.raises(AssertionError, match="POSTGRES_PASSWORD"):
        compose({})


def test_dockyard_services_use_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    data = compose(example_env())
    services = data["services"]
    for name in ("dockyard", "worker"):
        service = services[name]
        for variable, value in service["environment"].items():
            assert variable.removeprefix("DOCKYARD_").lower() in Settings.model_fields, variable
            monkeypatch.setenv(variable, str(value))
        settings = load_settings()
        assert settings.storage_driver == "s3"
        assert settings.database_url.startswith("postgresql://dockyard:change-me-postgres@postgres")
        assert settings.storage_s3_endpoint == "http://seaweedfs:8333"
        assert settings.job_workers == 0
        for dependency in service["depends_on"]:
            assert dependency in services
    assert services["worker"]["command"][0] == "worker"
    assert services["dockyard"]["command"] == ["serve"]
    # published on loopback only: a proxy (or TLS settings) goes in front
    assert services["dockyard"]["ports"] == ["127.0.0.1:5000:5000"]
    # the bucket's secret is the one Dockyard signs with
    config = data["configs"]["seaweedfs-s3"]["content"]
    assert '"secretKey": "change-me-s3-secret"' in config
    assert "$(seq 60)" in services["bucket"]["command"][0]

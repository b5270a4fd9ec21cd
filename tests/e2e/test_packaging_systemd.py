"""deploy/systemd: the two units pass ``systemd-analyze verify`` (in a scratch root holding
systemd's own units and an executable at the unit's ExecStart path, so that nothing is
installed on this machine) without a single warning, and run real ``dockyard`` commands with
real options and settings."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest
from tests.support.deploy_tools import REPO

from dockyard.cli import main
from dockyard.settings import Settings

pytestmark = pytest.mark.e2e

UNITS = REPO / "deploy" / "systemd"
NAMES = ("dockyard.service", "dockyard-worker.service")
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def _analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail(
            "systemd-analyze is missing; scripts/test installs it (apt-get install systemd)"
        )
    return found


def _scratch_root(tmp_path: Path, units: dict[str, str]) -> Path:
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    executable = root / "opt/dockyard/bin/dockyard"
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\nexit 0\n")
    executable.chmod(0o755)
    for name, text in units.items():
        (root / "etc/systemd/system" / name).write_text(text)
    return root


def _verify(root: Path, *names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_analyze(), "verify", f"--root={root}", *names],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
        cwd=root,
    )


def test_units_verify_without_a_warning(tmp_path: Path) -> None:
    root = _scratch_root(tmp_path, {name: (UNITS / name).read_text() for name in NAMES})
    result = _verify(root, *NAMES)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_verify_catches_a_bad_unit(tmp_path: Path) -> None:
    text = (
        (UNITS / "dockyard.service")
        .read_text()
        .replace("ProtectSystem=strict", "ProtectSystem=strikt")
    )
    root = _scratch_root(tmp_path, {"dockyard.service": text})
    assert "strikt" in _verify(root, "dockyard.service").stderr


def _unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


@pytest.mark.parametrize(("name", "command"), [(NAMES[0], "serve"), (NAMES[1], "worker")])
def test_units_run_real_commands_and_settings(name: str, command: str) -> None:
    service = _unit(name)["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "/opt/dockyard/bin/dockyard"
    assert argv[1] == command
    sub = main.commands[command]
    # the options parse as the command's own (a typo'd or removed option fails here)
    # A context under main's, as the command line makes it: click keeps the first help
    # option it builds for a command, so an orphan context would leave ``serve -h`` broken
    # for every later test in this process.
    with (
        click.Context(main, info_name="dockyard", **main.context_settings) as parent,
        click.Context(sub, parent=parent, info_name=command) as ctx,
    ):
        parser = sub.make_parser(ctx)
        options, rest, _ = parser.parse_args(argv[2:])
    assert not rest
    assert options["config"] == "/etc/dockyard/dockyard.yml"
    for assignment in shlex.split(service["Environment"]):
        variable = assignment.split("=", 1)[0]
        assert variable.removeprefix("DOCKYARD_").lower() in Settings.model_fields
    assert service["User"] == "dockyard"
    assert service["StateDirectory"] == "dockyard"
    assert service["UMask"] == "0077"

"""Fixtures for end-to-end tests: real ``dockyard serve`` processes driven by real clients.

- ``server``: a server on SQLite, one per test module.
- ``backend_server``: parametrized over SQLite and PostgreSQL (a fresh database per module), for
  the modules whose every test should hold on both.

Each starts on a copy of a migrated database and is killed at the end of its module, not
stopped gracefully (``tests/support/server.py``, ``disposable``): nothing of it is kept.
- ``basic_server``: a server that challenges with ``Basic`` instead of ``Bearer``.
- ``skopeo``: runs skopeo with an isolated auth file and an accept-anything signature policy.

When a test fails, the part of the server log written during that test is attached to the
report (section "dockyard server log").
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from tests.support.podman import Podman
from tests.support.postgres import postgres_admin_url, temporary_database
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


# --- servers -----------------------------------------------------------------------------------


_servers_of_test: dict[str, list[tuple[DockyardServer, int]]] = {}


@pytest.fixture(autouse=True)
def _server_log_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """Remember where each server's log stood when the test began, to quote it on failure."""
    servers = [
        request.getfixturevalue(name)
        for name in ("server", "backend_server", "basic_server")
        if name in request.fixturenames
    ]
    if "cluster" in request.fixturenames:  # several nodes (test_many_nodes.py)
        servers.extend(getattr(request.getfixturevalue("cluster"), "nodes", ()))
    _servers_of_test[request.node.nodeid] = [(s, s.log_offset()) for s in servers]
    yield
    _servers_of_test.pop(request.node.nodeid, None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for server, offset in _servers_of_test.get(item.nodeid, []):
            text = server.output_since(offset)
            if len(text) > 20000:
                text = "…" + text[-20000:]
            report.sections.append((f"dockyard server log ({server.url})", text))
    return report


@pytest.fixture(scope="module")
def server() -> Iterator[DockyardServer]:
    with DockyardServer() as running:
        yield running


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend_server(request: pytest.FixtureRequest) -> Iterator[DockyardServer]:
    if request.param == "sqlite":
        with DockyardServer() as running:
            yield running
        return
    with (
        temporary_database(postgres_admin_url(), migrated=True) as url,
        DockyardServer(database_url=url, disposable=True) as running,
    ):
        yield running


@pytest.fixture(scope="module")
def basic_server() -> Iterator[DockyardServer]:
    with DockyardServer(env={"DOCKYARD_AUTH_CHALLENGE": "basic"}) as running:
        yield running


# --- names -------------------------------------------------------------------------------------


@pytest.fixture
def repo_name(request: pytest.FixtureRequest) -> str:
    """A repository name in the public ``library`` project, unique to this test."""
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name.lower()).strip("-")
    return f"library/{stem[:40].strip('-')}-{uuid.uuid4().hex[:8]}"


# --- skopeo ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    executable = shutil.which("skopeo")
    if executable is None:
        pytest.fail("skopeo is not installed; scripts/test installs it (apt-get install skopeo)")
    return Skopeo(executable=executable, workdir=tmp_path_factory.mktemp("skopeo"))


# --- podman ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    executable = shutil.which("podman")
    if executable is None:
        pytest.fail("podman is not installed; scripts/test installs it (apt-get install podman)")
    return Podman(executable=executable, workdir=tmp_path_factory.mktemp("podman"))

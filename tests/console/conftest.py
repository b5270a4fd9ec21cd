"""Browser fixtures: a real ``dockyard serve`` and Debian's Chromium driven by Playwright.

The browser is ``/usr/bin/chromium`` (``scripts/test`` installs Debian's ``chromium``);
Playwright never downloads one. Screenshots go to a temporary folder, or to
``docs/screenshots`` when ``DOCKYARD_SCREENSHOTS=docs`` (how the committed ones were made).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_MODULES = ("test_browser",)
DESKTOP = {"width": 1366, "height": 768}  # a common laptop screen (issue 15 checks this width)
PHONE = {"width": 390, "height": 844}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        path = Path(item.path)
        if path.parent == here and path.stem.startswith(BROWSER_MODULES):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="module")
def server() -> Iterator[DockyardServer]:
    with DockyardServer() as running:
        yield running


# Module scope, not session: Playwright's sync API keeps an event loop set on this
# thread while it runs, and every asyncio test after it would then refuse to start.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(
            "Debian's chromium is missing; scripts/test installs it (apt-get install chromium)"
        )
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
    )
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser, server: DockyardServer) -> Iterator[BrowserContext]:
    ctx = browser.new_context(
        base_url=server.url, viewport=DESKTOP, locale="en-US", color_scheme="light"
    )
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("DOCKYARD_SCREENSHOTS") == "docs":
        folder = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    executable = shutil.which("skopeo")
    if executable is None:
        pytest.fail("skopeo is not installed; scripts/test installs it (apt-get install skopeo)")
    return Skopeo(executable=executable, workdir=tmp_path_factory.mktemp("skopeo"))

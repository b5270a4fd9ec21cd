"""The job pages in a real browser (Debian's Chromium through Playwright) against a real
``dockyard serve``: a garbage collection dry run read back from its log, the job service
dashboard, a tag retention run on images pushed by skopeo, and a webhook's test delivery
with its log."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect
from tests.console.test_browser import new_project, push, shoot, sign_in
from tests.support.oci_layout import make_image_layout
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

pytestmark = pytest.mark.e2e


def reload_until(page: Page, locator: Locator, pattern: str, seconds: float = 30) -> None:
    """Reload (the history is not live) until ``locator`` shows ``pattern``."""
    deadline = time.monotonic() + seconds
    while not re.search(pattern, locator.inner_html()):
        assert time.monotonic() < deadline, f"{pattern!r} never showed: {locator.inner_html()}"
        time.sleep(0.3)
        page.reload()


def test_run_a_gc_dry_run_and_read_its_log(
    page: Page, server: DockyardServer, screenshots: Path
) -> None:
    sign_in(page, "admin", server.admin_password)
    page.get_by_role("link", name="Garbage collection").click()
    expect(page).to_have_url(re.compile(r"/harbor/admin/gc$"))
    page.get_by_test_id("gc-dry-run").click()
    status = page.get_by_role("status")
    expect(status).to_have_text(re.compile(r"Garbage collection \d+ was started\."))
    run_id = re.search(r"\d+", status.inner_text()).group(0)  # type: ignore[union-attr]
    row = page.locator(f'tr[data-run="{run_id}"]')
    # The history refreshes itself (htmx) while the run is pending or running.
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "Success", timeout=30_000)
    expect(page.locator('[data-live="true"]')).to_have_count(0)
    expect(row.get_by_role("cell").nth(3)).to_have_text("Yes")  # a dry run
    # The log opens inside the page (htmx), the URL stays the GC page's.
    row.get_by_test_id("log-link").click()
    expect(page.get_by_test_id("job-log")).to_contain_text("dry run: nothing deleted")
    expect(page.get_by_role("heading", name=f"Log of garbage collection {run_id}")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/harbor/admin/gc$"))
    shoot(page, screenshots, "gc-en")
    # A schedule: Custom with its cron, shown again after saving.
    page.get_by_label("Schedule").select_option(label="Custom")
    page.get_by_label("Cron", exact=True).fill("0 0 3 * * 6")
    page.get_by_test_id("gc-save").click()
    expect(page.get_by_role("status")).to_have_text("The garbage collection schedule was saved.")
    expect(page.get_by_label("Cron", exact=True)).to_have_value("0 0 3 * * 6")

    page.get_by_role("link", name="Job service").click()
    queue = page.locator('tr[data-queue="GARBAGE_COLLECTION"]')
    expect(queue).to_be_visible()
    expect(page.get_by_test_id("schedules")).to_contain_text("0 0 3 * * 6")
    expect(page.get_by_test_id("pools").locator("tbody tr")).to_have_count(1)
    shoot(page, screenshots, "job-service-en")
    queue.get_by_test_id("queue-pause").click()
    expect(page.get_by_role("status")).to_have_text("The GARBAGE_COLLECTION queue was paused.")
    expect(queue.locator("[data-paused]")).to_have_attribute("data-paused", "true")
    queue.get_by_test_id("queue-resume").click()
    expect(queue.locator("[data-paused]")).to_have_attribute("data-paused", "false")


def test_a_webhook_test_delivery_and_its_log(
    page: Page, server: DockyardServer, screenshots: Path
) -> None:
    project = new_project(server)
    sign_in(page, "admin", server.admin_password)
    page.goto(f"/harbor/projects/{project}")
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_test_id("new-webhook").click()
    name = f"hook-{uuid.uuid4().hex[:6]}"
    page.get_by_test_id("webhook-name").fill(name)
    page.get_by_test_id("webhook-address").fill("http://127.0.0.1:9/hook")
    page.get_by_test_id("save-webhook").click()
    expect(page.get_by_role("status")).to_have_text(f"Webhook {name} was created.")
    shoot(page, screenshots, "webhooks-en")
    page.locator(f'tr[data-policy="{name}"]').get_by_test_id("webhook-test").click()
    expect(page.get_by_role("status")).to_contain_text("A test event was sent")
    tasks = page.get_by_test_id("webhook-tasks")
    # The first attempt is over (nothing listens on port 9) once a task is no longer
    # running and has been run at least once.
    reload_until(page, tasks, r'(?s)data-status="(Pending|Error)".*?<td class="num"[^>]*>[1-9]')
    with httpx.Client(base_url=server.url, auth=server.admin_auth) as api:
        policies = api.get(f"/api/v2.0/projects/{project}/webhook/policies").json()
    assert [p["name"] for p in policies] == [name]
    # The deliveries refresh themselves while one is retrying: open the log as a page.
    href = tasks.get_by_test_id("log-link").first.get_attribute("href")
    assert href is not None
    page.goto(href)
    expect(page.get_by_test_id("job-log")).to_contain_text(
        "attempt 1: POST http://127.0.0.1:9/hook"
    )


def test_a_retention_rule_run_keeps_the_newest_tag(
    page: Page,
    server: DockyardServer,
    skopeo: Skopeo,
    tmp_path: Path,
    screenshots: Path,
) -> None:
    project = new_project(server)
    for number in (1, 2, 3):  # three different images, pushed in order
        image = make_image_layout(tmp_path / f"v{number}", layers=1, layer_size=512)
        push(skopeo, server, image, f"{project}/app:v{number}", server.admin_creds)
    sign_in(page, "admin", server.admin_password)
    page.goto(f"/harbor/projects/{project}")
    page.get_by_role("link", name="Tag retention").click()
    page.get_by_test_id("new-rule").click()
    page.get_by_test_id("rule-template").select_option("latestPushedK")
    page.get_by_test_id("rule-value").fill("1")
    page.get_by_test_id("rule-tag-pattern").fill("v*")
    page.get_by_test_id("save-rule").click()
    expect(page.get_by_role("status")).to_have_text("The retention rule was saved.")
    rules = page.get_by_test_id("retention-rules")
    expect(rules).to_contain_text("retain the most recently pushed artifact")
    shoot(page, screenshots, "retention-en")
    page.get_by_test_id("retention-run").click()
    expect(page.get_by_role("status")).to_have_text(re.compile(r"Retention run \d+ was started\."))
    history = page.get_by_test_id("retention-history")
    reload_until(page, history, 'data-status="Success"')
    history.get_by_test_id("run-detail").first.click()
    task = page.get_by_test_id("retention-tasks").locator("tbody tr").first
    expect(task).to_contain_text(f"{project}/app")
    expect(task.locator("td.num").first).to_have_text("1")  # retained
    expect(task.locator("td.num").nth(1)).to_have_text("3")  # of total
    shoot(page, screenshots, "retention-run-en")
    task.get_by_test_id("log-link").click()
    log = page.get_by_test_id("job-log")
    expect(log).to_contain_text("RETAIN")
    expect(log).to_contain_text("DELETE")
    with httpx.Client(base_url=server.url, auth=server.admin_auth) as api:
        left = api.get(f"/api/v2.0/projects/{project}/repositories/app/artifacts").json()
    assert [t["name"] for a in left for t in a["tags"] or []] == ["v3"]

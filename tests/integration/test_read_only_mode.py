"""Harbor's read-only mode (the ``read_only`` configuration item): every change through
``/v2/`` and ``/api/v2.0/`` is refused with Harbor's ``403 DENIED``; pulls, reads and
``PUT /configurations`` still work."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from tests.integration.conftest import ADMIN_PASSWORD
from tests.integration.registry_helpers import digest_of, error_code, push_image
from tests.integration.test_console_pages import console, flash, follow
from tests.integration.test_gc import GC, seed_garbage, wait_gc
from tests.integration.test_retention import (
    create_policy,
    new_project,
    policy,
    push,
    rule,
    tags_in,
    wait_final,
)

from dockyard.gc import service as gc_service
from dockyard.http.state import AppState
from dockyard.retention import repository as retention_repo
from dockyard.retention import service as retention
from dockyard.storage import blob_key
from dockyard.system.readonly import MESSAGE

__all__ = ["console"]  # a fixture (from the console tests) this module uses

URL = "/api/v2.0/configurations"


@pytest.fixture
async def read_only(admin: httpx.AsyncClient) -> AsyncIterator[None]:
    """Read-only mode on for the test, off again whatever it did."""
    response = await admin.put(URL, json={"read_only": True})
    assert response.status_code == 200, response.text
    try:
        yield
    finally:
        assert (await admin.put(URL, json={"read_only": False})).status_code == 200


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert error_code(response) == "DENIED"
    assert response.json()["errors"][0]["message"] == MESSAGE


async def test_writes_refused_reads_served_until_switched_off(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, unique_repo: str
) -> None:
    digest, _ = await push_image(admin, unique_repo, "v1", seed=b"ro-before")
    assert (await admin.put(URL, json={"read_only": True})).status_code == 200
    try:
        assert (await admin.get(URL)).json()["read_only"] == {"value": True, "editable": True}
        assert (await admin.get("/api/v2.0/systeminfo")).json()["read_only"] is True

        # /v2/: upload starts, monolithic pushes, manifests, deletes and mounts refused
        blob = b"read-only blob"
        _refused(await admin.post(f"/v2/{unique_repo}/blobs/uploads/"))
        _refused(
            await admin.post(
                f"/v2/{unique_repo}/blobs/uploads/",
                params={"digest": digest_of(blob)},
                content=blob,
            )
        )
        _refused(
            await admin.post(
                f"/v2/{unique_repo}/blobs/uploads/",
                params={"mount": digest_of(blob), "from": "library/elsewhere"},
            )
        )
        _refused(await admin.put(f"/v2/{unique_repo}/manifests/v2", content=b"{}"))
        _refused(await admin.delete(f"/v2/{unique_repo}/manifests/{digest}"))
        _refused(await anon.post(f"/v2/{unique_repo}/blobs/uploads/"))

        # pulls still served
        pulled = await admin.get(f"/v2/{unique_repo}/manifests/v1")
        assert pulled.status_code == 200, pulled.text
        layer = pulled.json()["layers"][0]["digest"]
        assert (await admin.get(f"/v2/{unique_repo}/blobs/{layer}")).status_code == 200

        # /api/v2.0/ changes refused with Harbor's body; reads served
        project, name = unique_repo.split("/", 1)
        repo_url = f"/api/v2.0/projects/{project}/repositories/{name}"
        _refused(await admin.delete(repo_url))
        _refused(await admin.delete(f"{repo_url}/artifacts/{digest}"))
        _refused(await admin.post("/api/v2.0/projects", json={"project_name": "rocreate"}))
        assert (await admin.get(repo_url)).status_code == 200
        assert (await admin.get(f"{repo_url}/artifacts/{digest}")).status_code == 200
    finally:
        assert (await admin.put(URL, json={"read_only": False})).status_code == 200

    assert (await admin.get("/api/v2.0/systeminfo")).json()["read_only"] is False
    await push_image(admin, unique_repo, "v2", seed=b"ro-after")
    assert (await admin.delete(f"/v2/{unique_repo}/manifests/{digest}")).status_code == 202


async def test_logins_still_work(anon: httpx.AsyncClient, read_only: None) -> None:
    token = await anon.get(
        "/service/token",
        params={"service": "dockyard", "scope": "repository:library/x:pull"},
        auth=("admin", ADMIN_PASSWORD),
    )
    assert token.status_code == 200, token.text
    login = await anon.post("/c/login", data={"principal": "admin", "password": ADMIN_PASSWORD})
    assert login.status_code == 200, login.text


async def test_gc_deletes_nothing_while_on(
    admin: httpx.AsyncClient, state: AppState, read_only: None
) -> None:
    """A run started before the switch (or by a schedule) only reports, as a dry run."""
    garbage = await seed_garbage(state, 2, "read-only-garbage")
    params = gc_service.parse_params({"time_window": 1}, state.settings.gc_time_window_hours)
    async with state.db.write() as session:
        execution = await gc_service.start(session, params)
    assert execution is not None
    run = await wait_gc(admin, execution.id)
    assert run["job_status"] == "Success", run
    root = state.settings.effective_storage_root
    assert all((root / blob_key(d)).exists() for d in garbage)
    log = (await admin.get(f"{GC}/{execution.id}/log")).text
    assert "read-only mode is on: nothing is deleted" in log


async def test_retention_removes_nothing_while_on(
    admin: httpx.AsyncClient, state: AppState
) -> None:
    project, project_id = await new_project(admin)
    repository = f"{project}/kept"
    await push(admin, repository, "a", "ro-a")
    await push(admin, repository, "b", "ro-b")
    # A rule no tag matches: a real run would remove both.
    policy_id = await create_policy(admin, policy(project_id, rule(tag="matches-nothing")))
    assert (await admin.put(URL, json={"read_only": True})).status_code == 200
    try:
        async with state.db.write() as session:
            row = await retention_repo.find_policy(session, policy_id)
            assert row is not None
            execution = await retention.launch(
                session, row, "SCHEDULE", dry_run=False, operator="admin"
            )
        done = await wait_final(state, execution.id)
        assert done.status == "Success", done.status
    finally:
        assert (await admin.put(URL, json={"read_only": False})).status_code == 200
    assert await tags_in(state, repository) == {"a", "b"}


async def test_console_changes_refused_but_mode_switched_off_there(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient, unique_repo: str
) -> None:
    client, csrf = console
    digest, _ = await push_image(admin, unique_repo, "v1", seed=b"ro-console")
    project, name = unique_repo.split("/", 1)
    repo_page = f"/harbor/projects/{project}/repositories/{name}/-"
    assert (await admin.put(URL, json={"read_only": True})).status_code == 200
    try:
        refused = await client.post(f"{repo_page}/delete", data={"_csrf": csrf})
        assert MESSAGE in flash(await follow(client, refused))
        assert (await admin.get(f"/v2/{unique_repo}/manifests/{digest}")).status_code == 200
        form = {"_csrf": csrf, **await _configuration_form(admin)}
        switched = await client.post("/harbor/admin/configuration", data=form)
        assert switched.status_code == 303
        assert (await admin.get(URL)).json()["read_only"]["value"] is False
    finally:
        assert (await admin.put(URL, json={"read_only": False})).status_code == 200
    deleted = await client.post(f"{repo_page}/delete", data={"_csrf": csrf})
    assert MESSAGE not in flash(await follow(client, deleted))
    assert (await admin.get(f"/v2/{unique_repo}/manifests/{digest}")).status_code == 404


async def _configuration_form(admin: httpx.AsyncClient) -> dict[str, str]:
    """The console's configuration form as it stands, with read-only mode unticked."""
    items = {k: v["value"] for k, v in (await admin.get(URL)).json().items()}
    form = {
        key: str(items[key])
        for key in (
            "project_creation_restriction",
            "robot_token_duration",
            "storage_per_project",
            "banner_message",
            "disabled_audit_log_event_types",
            "token_expiration",
            "session_timeout",
            "robot_name_prefix",
        )
    }
    for key in ("self_registration", "notification_enable", "quota_per_project_enable"):
        if items[key]:
            form[key] = "on"
    return form

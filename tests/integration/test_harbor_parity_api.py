"""``/api/v2.0/`` answers that Harbor's tooling can tell apart (issue 14, items 7, 13, 17).

Each test pins Harbor's (v2.15) answer.
"""

from __future__ import annotations

import json

import httpx
from starlette.applications import Starlette
from tests.console.helpers import sign_in
from tests.integration.conftest import ADMIN_PASSWORD, make_client
from tests.integration.registry_helpers import OCI_INDEX, OCI_MANIFEST, digest_of, push_image
from tests.integration.test_retention import API, create_policy, new_project, policy, rule

# --- item 7: retention tag selector extras are read as Harbor reads them ---------------------


async def test_retention_accepts_the_extras_harbors_portal_sends(admin: httpx.AsyncClient) -> None:
    _, project_id = await new_project(admin)
    sent = rule("latestPushedK", 3)
    sent["tag_selectors"][0]["extras"] = '["untagged":True]'  # not JSON; Harbor accepts it
    policy_id = await create_policy(admin, policy(project_id, sent))

    shown = (await admin.get(f"{API}/retentions/{policy_id}")).json()
    assert shown["rules"][0]["tag_selectors"][0]["extras"] == '{"untagged":true}'


# --- item 13: every sub-scope of the permission tree ----------------------------------------


def _pairs(response: httpx.Response) -> set[tuple[str, str]]:
    assert response.status_code == 200, response.text
    return {(p["resource"], p["action"]) for p in response.json()}


async def test_current_permissions_answer_every_sub_scope(admin: httpx.AsyncClient) -> None:
    _, project_id = await new_project(admin)
    url = f"{API}/users/current/permissions"
    scope = f"/project/{project_id}"
    whole = _pairs(await admin.get(url, params={"scope": scope, "relative": "true"}))
    repository_actions = {a for r, a in whole if r == "repository"}
    assert {"pull", "push", "delete"} <= repository_actions

    sub = f"{scope}/repository"
    relative = _pairs(await admin.get(url, params={"scope": sub, "relative": "true"}))
    assert relative == {(".", a) for a in repository_actions}
    absolute = _pairs(await admin.get(url, params={"scope": sub}))
    assert absolute == {(sub, a) for a in repository_actions}
    trailing = _pairs(await admin.get(url, params={"scope": scope + "/", "relative": "true"}))
    assert trailing == whole

    catalog = _pairs(await admin.get(url, params={"scope": "/system/catalog", "relative": "true"}))
    assert catalog == {(".", "read")}
    for nothing in (f"{scope}/repo", f"{scope}/nosuch", "/system/nosuch"):
        assert _pairs(await admin.get(url, params={"scope": nothing})) == set()


# --- item 17: an index's children are listed under it, not as rows of their own --------------


async def test_a_two_platform_image_is_one_artifact_in_listings_and_counts(
    app: Starlette, admin: httpx.AsyncClient
) -> None:
    project, _ = await new_project(admin)
    repository = f"{project}/app"
    children = [await push_image(admin, repository, None, seed=s) for s in (b"amd", b"arm")]
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": d, "size": len(body)} for d, body in children
            ],
        }
    ).encode()
    pushed = await admin.put(
        f"/v2/{repository}/manifests/latest", content=index, headers={"Content-Type": OCI_INDEX}
    )
    assert pushed.status_code == 201, pushed.text
    single, _ = await push_image(admin, repository, "single", seed=b"single")

    base = f"{API}/projects/{project}/repositories/app"
    listed = await admin.get(f"{base}/artifacts", params={"page_size": 100})
    assert listed.status_code == 200
    assert [a["digest"] for a in listed.json()] == [single, digest_of(index)]
    assert listed.headers["X-Total-Count"] == "2"
    [index_row] = [a for a in listed.json() if a["digest"] == digest_of(index)]
    assert [r["child_digest"] for r in index_row["references"]] == [d for d, _ in children]
    untagged = await admin.get(f"{base}/artifacts", params={"q": "tags=nil"})
    assert untagged.json() == []
    # A child is still there by digest, and the project's listing follows the same rule.
    assert (await admin.get(f"{base}/artifacts/{children[0][0]}")).status_code == 200
    in_project = await admin.get(f"{API}/projects/{project}/artifacts")
    assert in_project.headers["X-Total-Count"] == "2"

    assert (await admin.get(base)).json()["artifact_count"] == 2
    repositories = await admin.get(f"{API}/projects/{project}/repositories")
    assert [r["artifact_count"] for r in repositories.json()] == [2]

    async with make_client(app) as client:
        await sign_in(client, "admin", ADMIN_PASSWORD)
        page = await client.get(f"/harbor/projects/{project}/repositories/app")
        assert page.status_code == 200
        assert page.text.count("<tr data-digest=") == 2
        assert page.text.count('<tr class="child">') == 2
        summary = await client.get(f"/harbor/projects/{project}")
        assert summary.status_code == 200
        assert '<p class="big" data-testid="artifact-count">2</p>' in summary.text


# --- item 9 in the console: the form offers every event, all of them sent --------------------


async def test_console_offers_every_event_and_keeps_stored_ones(
    app: Starlette, admin: httpx.AsyncClient
) -> None:
    project, _ = await new_project(admin)
    body = {
        "name": "scans",
        "enabled": True,
        "event_types": ["PUSH_ARTIFACT", "SCANNING_FAILED"],
        "targets": [{"type": "http", "address": "http://127.0.0.1:9/x"}],
    }
    made = await admin.post(f"{API}/projects/{project}/webhook/policies", json=body)
    assert made.status_code == 201, made.text
    policy_id = made.headers["location"].rsplit("/", 1)[1]
    async with make_client(app) as client:
        await sign_in(client, "admin", ADMIN_PASSWORD)
        listing = await client.get(f"/harbor/projects/{project}/webhooks")
        assert listing.status_code == 200
        assert 'value="PUSH_ARTIFACT"' in listing.text
        assert 'value="DELETE_TAG"' in listing.text
        for kind in ("REPLICATION", "SCANNING_COMPLETED", "SCANNING_FAILED", "SCANNING_STOPPED"):
            assert f'value="{kind}"' in listing.text
        edit = await client.get(f"/harbor/projects/{project}/webhooks/{policy_id}/edit")
        assert edit.status_code == 200, edit.text
        assert 'value="SCANNING_FAILED" checked' in edit.text
        assert 'value="REPLICATION" >' in edit.text  # offered, not chosen

"""``/api/v2.0/`` answers that Harbor's tooling can tell apart (issue 14, items 7, 9, 13).

Each test pins Harbor's (v2.15) answer.
"""

from __future__ import annotations

import httpx
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

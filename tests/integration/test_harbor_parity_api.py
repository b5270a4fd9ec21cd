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

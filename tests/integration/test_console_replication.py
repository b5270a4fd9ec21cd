"""The console's Registries and Replications pages through the ASGI app on SQLite and
PostgreSQL, against Debian's ``docker-registry`` with Basic auth (one per module): forms
refused by the services come back with the reason and what was typed (never a 500, never
the secret), test connection saved and unsaved, a blank secret keeps the stored one, an
endpoint in use is not deleted, rules with every option round-trip through the API, and a
non-administrator is refused everywhere."""

from __future__ import annotations

import asyncio
import html
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from tests.console.helpers import sign_in
from tests.integration.conftest import ADMIN_PASSWORD, make_client
from tests.support.docker_registry import DockerRegistry, available, start_docker_registry

pytestmark = pytest.mark.skipif(not available(), reason="docker-registry is not installed")

API = "/api/v2.0"
REGISTRIES = "/harbor/admin/registries"
RULES = "/harbor/admin/replications"


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    with start_docker_registry(tmp_path_factory.mktemp("console-remote"), auth="basic") as reg:
        yield reg


@pytest.fixture
async def console(app: Starlette) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with make_client(app) as client:
        yield client, await sign_in(client, "admin", ADMIN_PASSWORD)


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _flash(page: httpx.Response) -> str:
    found = re.search(r'<div class="flash[^"]*"[^>]*>(.*?)</div>', page.text, re.S)
    return html.unescape(found.group(1)) if found else ""


def _form_error(page: httpx.Response) -> str:
    found = re.search(r'data-testid="form-error">(.*?)</div>', page.text, re.S)
    return html.unescape(found.group(1)) if found else ""


def _endpoint_form(remote: DockerRegistry, name: str, **extra: str) -> dict[str, str]:
    return {
        "name": name,
        "type": "docker-registry",
        "url": remote.url,
        "credential_type": "basic",
        "access_key": remote.username,
        "access_secret": remote.password,
        **extra,
    }


async def _registry_id(admin: httpx.AsyncClient, name: str) -> int:
    found = (await admin.get(f"{API}/registries", params={"q": f"name={name}"})).json()
    assert [r["name"] for r in found] == [name]
    return int(found[0]["id"])


async def test_registry_forms(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient, remote: DockerRegistry
) -> None:
    client, csrf = console
    name = f"r{_uid()}"
    # Refused input comes back in the form with what was typed, the secret excepted.
    bad = await client.post(
        REGISTRIES,
        data={"_csrf": csrf, **_endpoint_form(remote, name, url="ftp://nowhere")},
    )
    assert bad.status_code == 400
    assert "url must be an http:// or https:// URL" in _form_error(bad)
    assert f'value="{name}"' in bad.text and 'value="ftp://nowhere"' in bad.text
    assert remote.password not in bad.text
    assert (await admin.get(f"{API}/registries", params={"q": f"name={name}"})).json() == []
    for hostile in ({"ca_certificate": "not a pem"}, {"type": "quay"}, {"credential_type": "x"}):
        refused = await client.post(
            REGISTRIES, data={"_csrf": csrf, **_endpoint_form(remote, name, **hostile)}
        )
        assert refused.status_code == 400, hostile
        assert _form_error(refused), hostile

    # Test connection of an unsaved endpoint: the htmx fragment, then a plain form post.
    ping = await client.post(
        f"{REGISTRIES}/ping",
        data={"_csrf": csrf, **_endpoint_form(remote, name)},
        headers={"HX-Request": "true", "HX-Target": "ping-result"},
    )
    assert ping.status_code == 200
    assert 'data-testid="ping-ok"' in ping.text and "<html" not in ping.text
    wrong = await client.post(
        f"{REGISTRIES}/ping",
        data={"_csrf": csrf, **_endpoint_form(remote, name, access_secret="nope")},
    )
    assert wrong.status_code == 200 and 'data-testid="ping-failed"' in wrong.text
    assert f'value="{name}"' in wrong.text and 'value="nope"' not in wrong.text

    created = await client.post(
        REGISTRIES,
        data={"_csrf": csrf, **_endpoint_form(remote, name, description="<b>dr</b>")},
    )
    assert created.status_code == 303
    listing = await client.get(REGISTRIES)
    assert f"Registry endpoint {name} was created." in _flash(listing)
    assert "&lt;b&gt;dr&lt;/b&gt;" in listing.text
    registry_id = await _registry_id(admin, name)
    stored = (await admin.get(f"{API}/registries/{registry_id}")).json()
    assert stored["credential"] == {
        "type": "basic",
        "access_key": remote.username,
        "access_secret": "*****",
    }
    assert stored["status"] == "unknown"

    # A name in use is refused in the form.
    again = await client.post(REGISTRIES, data={"_csrf": csrf, **_endpoint_form(remote, name)})
    assert again.status_code == 400 and "already exists" in _form_error(again)

    # Edit: the secret is never in the page; a blank one keeps the stored secret.
    edit = await client.get(f"{REGISTRIES}/{registry_id}/edit")
    assert edit.status_code == 200 and remote.password not in edit.text
    saved = await client.post(
        f"{REGISTRIES}/update",
        data={
            "_csrf": csrf,
            "registry": str(registry_id),
            **_endpoint_form(remote, name, access_secret="", description="edited"),
        },
    )
    assert saved.status_code == 303
    after = (await admin.get(f"{API}/registries/{registry_id}")).json()
    assert after["description"] == "edited" and after["credential"]["access_secret"] == "*****"
    # The list's test button pings the saved endpoint (its kept secret works) and records it.
    tested = await client.post(
        f"{REGISTRIES}/ping", data={"_csrf": csrf, "registry": str(registry_id), "from": "list"}
    )
    assert tested.status_code == 303
    assert "connection and credentials are fine" in _flash(await client.get(REGISTRIES))
    assert (await admin.get(f"{API}/registries/{registry_id}")).json()["status"] == "healthy"
    # The edit form's test with another secret fails, and says why; nothing is saved.
    failed = await client.post(
        f"{REGISTRIES}/ping",
        data={
            "_csrf": csrf,
            "registry": str(registry_id),
            **_endpoint_form(remote, name, access_secret="wrong-one"),
        },
    )
    assert "The test failed" in failed.text
    assert (await admin.get(f"{API}/registries/{registry_id}")).json()["status"] == "unhealthy"
    # "none" removes the credential.
    await client.post(
        f"{REGISTRIES}/update",
        data={
            "_csrf": csrf,
            "registry": str(registry_id),
            **_endpoint_form(remote, name, credential_type="none", access_secret=""),
        },
    )
    assert "credential" not in (await admin.get(f"{API}/registries/{registry_id}")).json()

    deleted = await client.post(
        f"{REGISTRIES}/delete", data={"_csrf": csrf, "registry": str(registry_id)}
    )
    assert deleted.status_code == 303
    assert (await admin.get(f"{API}/registries/{registry_id}")).status_code == 404


def _rule_form(rule: str, registry_id: int, **extra: str) -> dict[str, str]:
    return {
        "name": rule,
        "description": "nightly mirror",
        "mode": "push",
        "registry": str(registry_id),
        "name_filter": "library/**",
        "name_decoration": "matches",
        "tag_filter": "semver:>=1.2 <2",
        "tag_decoration": "matches",
        "label_filter": "",
        "label_decoration": "matches",
        "resource": "image",
        "dest_namespace": "mirror",
        "replace_count": "1",
        "trigger": "scheduled",
        "cron": "0 0 3 * * *",
        "speed": "2048",
        "override": "on",
        "copy_by_chunk": "on",
        "single_active_replication": "on",
        "enabled": "on",
        **extra,
    }


async def test_rule_forms_and_actions(
    console: tuple[httpx.AsyncClient, str], admin: httpx.AsyncClient, remote: DockerRegistry
) -> None:
    client, csrf = console
    endpoint = f"r{_uid()}"
    made = await client.post(REGISTRIES, data={"_csrf": csrf, **_endpoint_form(remote, endpoint)})
    assert made.status_code == 303
    registry_id = await _registry_id(admin, endpoint)
    name = f"rule-{_uid()}"

    # Each refusal comes back in the form with what was typed.
    for extra, reason in (
        ({"cron": "every day"}, "cron"),
        ({"speed": "fast"}, "bandwidth"),
        ({"registry": ""}, "destination registry"),
        ({"mode": "sideways"}, "push-based or pull-based"),
        ({"tag_filter": "regex:(a+)+"}, "tag filter"),
        ({"name_decoration": "maybe"}, "decoration"),
        ({"mode": "pull", "label_filter": "gold"}, "label filters"),
        ({"dest_namespace": "Bad Namespace"}, "dest_namespace"),
        ({"speed": "99999999999"}, "speed is KB/s between"),
        ({"speed": "-5"}, "speed"),
        ({"replace_count": "99"}, "dest_namespace_replace_count"),
        ({"registry": "999999"}, "does not exist"),
        ({"registry": "abc"}, "destination registry"),
        ({"mode": "pull", "registry": "abc"}, "source registry"),
        ({"mode": "pull", "label_filter": ""}, "copy_by_chunk applies to push-based"),
        ({"trigger": "sometimes"}, "trigger.type"),
        ({"name": ""}, "name is required"),
    ):
        refused = await client.post(
            RULES, data={"_csrf": csrf, **_rule_form(name, registry_id, **extra)}
        )
        assert refused.status_code == 400, extra
        assert reason in _form_error(refused), (extra, _form_error(refused))
        assert f'value="{extra.get("name", name)}"' in refused.text
    assert (await admin.get(f"{API}/replication/policies", params={"name": name})).json() == []

    created = await client.post(RULES, data={"_csrf": csrf, **_rule_form(name, registry_id)})
    assert created.status_code == 303
    listing = await client.get(RULES)
    assert f"Replication rule {name} was created." in _flash(listing)
    policy = (await admin.get(f"{API}/replication/policies", params={"name": name})).json()[0]
    policy_id = policy["id"]
    assert policy["dest_registry"]["id"] == registry_id
    assert policy["src_registry"]["id"] == 0
    assert policy["dest_namespace"] == "mirror"
    assert policy["dest_namespace_replace_count"] == 1
    assert policy["trigger"] == {"type": "scheduled", "trigger_settings": {"cron": "0 0 3 * * *"}}
    assert sorted((f["type"], f["value"], f["decoration"]) for f in policy["filters"]) == [
        ("name", "library/**", "matches"),
        ("resource", "image", "matches"),
        ("tag", "semver:>=1.2 <2", "matches"),
    ]
    assert policy["speed"] == 2048
    assert policy["override"] and policy["copy_by_chunk"] and policy["enabled"]
    assert policy["single_active_replication"] and not policy["replicate_deletion"]

    # A pull-based rule: the endpoint is the source, this registry the destination.
    pull = f"pull-{_uid()}"
    pulled = await client.post(
        RULES,
        data={
            "_csrf": csrf,
            **_rule_form(
                pull,
                registry_id,
                mode="pull",
                trigger="manual",
                cron="",
                speed="",
                copy_by_chunk="",
            ),
        },
    )
    assert pulled.status_code == 303
    made_pull = (await admin.get(f"{API}/replication/policies", params={"name": pull})).json()[0]
    assert made_pull["src_registry"]["id"] == registry_id
    assert made_pull["dest_registry"]["id"] == 0
    assert made_pull["speed"] == -1 and made_pull["trigger"]["type"] == "manual"
    edit_pull = await client.get(f"{RULES}/{made_pull['id']}/edit")
    assert 'value="pull" checked' in edit_pull.text
    await client.post(f"{RULES}/delete", data={"_csrf": csrf, "policy": str(made_pull["id"])})

    # The endpoint is in use: deleting it is refused with the rule's name.
    refused = await client.post(
        f"{REGISTRIES}/delete",
        data={"_csrf": csrf, "registry": str(registry_id), "_back": REGISTRIES},
    )
    assert refused.status_code == 303
    assert name in _flash(await client.get(REGISTRIES))
    assert (await admin.get(f"{API}/registries/{registry_id}")).status_code == 200

    # A filter made through the API beyond the form's one of each kind is kept on edit.
    filters: list[dict[str, Any]] = [
        *policy["filters"],
        {"type": "tag", "value": "*-rc*", "decoration": "excludes"},
    ]
    put = await admin.put(
        f"{API}/replication/policies/{policy_id}", json={**policy, "filters": filters}
    )
    assert put.status_code == 200, put.text
    edit = await client.get(f"{RULES}/{policy_id}/edit")
    assert "1 more filter made through the API is kept as it is." in edit.text
    saved = await client.post(
        f"{RULES}/update",
        data={
            "_csrf": csrf,
            "policy": str(policy_id),
            **_rule_form(
                name,
                registry_id,
                trigger="event_based",
                replicate_deletion="on",
                tag_filter="v*",
                tag_decoration="excludes",
                label_filter="gold, silver",
                override="",
            ),
        },
    )
    assert saved.status_code == 303
    policy = (await admin.get(f"{API}/replication/policies/{policy_id}")).json()
    assert policy["trigger"]["type"] == "event_based" and policy["replicate_deletion"]
    assert policy["override"] is False
    assert sorted((f["type"], str(f["value"]), f["decoration"]) for f in policy["filters"]) == [
        ("label", "['gold', 'silver']", "matches"),
        ("name", "library/**", "matches"),
        ("resource", "image", "matches"),
        ("tag", "*-rc*", "excludes"),
        ("tag", "v*", "excludes"),
    ]

    # Disable (no Replicate now then), enable, run now, see the execution and its tasks.
    await client.post(
        f"{RULES}/toggle", data={"_csrf": csrf, "policy": str(policy_id), "enabled": "false"}
    )
    assert (await admin.get(f"{API}/replication/policies/{policy_id}")).json()["enabled"] is False
    # Searched by name: other modules sharing the database may fill the first page.
    disabled = await client.get(RULES, params={"q": name})
    assert f'data-rule="{name}"' in disabled.text
    row = disabled.text.split(f'data-rule="{name}"', 1)[1].split("</tr>", 1)[0]
    assert "replicate-now" not in row and 'data-enabled="false"' in row
    off = await client.post(
        f"{RULES}/run", data={"_csrf": csrf, "policy": str(policy_id), "_back": RULES}
    )
    assert off.status_code == 303 and "is disabled" in _flash(await client.get(RULES))
    await client.post(
        f"{RULES}/toggle", data={"_csrf": csrf, "policy": str(policy_id), "enabled": "true"}
    )
    run = await client.post(f"{RULES}/run", data={"_csrf": csrf, "policy": str(policy_id)})
    assert run.status_code == 303 and run.headers["location"] == f"{RULES}/{policy_id}"
    runs = (
        await admin.get(f"{API}/replication/executions", params={"policy_id": policy_id})
    ).json()
    execution_id = runs[0]["id"]
    page = await client.get(f"{RULES}/{policy_id}")
    assert f"Replication execution {execution_id} was started." in _flash(page)
    assert f'data-run="{execution_id}"' in page.text
    tasks = await client.get(f"{RULES}/{policy_id}/executions/{execution_id}")
    assert tasks.status_code == 200 and 'data-testid="tasks"' in tasks.text
    # An execution is shown under its own rule only.
    assert (
        await client.get(f"{RULES}/{policy_id + 1000}/executions/{execution_id}")
    ).status_code == 404
    assert (await client.get(f"{RULES}/{policy_id}/executions/999999")).status_code == 404
    assert (
        await client.get(f"{RULES}/{policy_id}/executions/{execution_id}/tasks/999999/log")
    ).status_code == 404
    stop = await client.post(
        f"{RULES}/stop",
        data={"_csrf": csrf, "policy": str(policy_id), "execution": str(execution_id)},
    )
    assert stop.status_code == 303

    for language in ("en", "zh-CN"):
        client.cookies.set("dy_lang", language)
        for path in (
            REGISTRIES,
            f"{REGISTRIES}/new",
            f"{REGISTRIES}/{registry_id}/edit",
            RULES,
            f"{RULES}/new",
            f"{RULES}/{policy_id}/edit",
            f"{RULES}/{policy_id}",
            f"{RULES}/{policy_id}/executions/{execution_id}",
        ):
            answer = await client.get(path)
            assert answer.status_code == 200, path
            if language == "zh-CN" and path == RULES:
                assert "复制管理" in answer.text and "立即复制" in answer.text
    client.cookies.delete("dy_lang")

    deadline = time.monotonic() + 30
    while (await admin.get(f"{API}/replication/executions/{execution_id}")).json()[
        "status"
    ] == "InProgress":
        assert time.monotonic() < deadline, "the stopped execution never ended"
        await asyncio.sleep(0.2)
    deleted = await client.post(f"{RULES}/delete", data={"_csrf": csrf, "policy": str(policy_id)})
    assert deleted.status_code == 303
    assert f"Replication rule {name} was deleted." in _flash(await client.get(RULES))
    assert (await admin.get(f"{API}/replication/policies", params={"name": name})).json() == []


async def test_a_non_administrator_is_refused(app: Starlette, admin: httpx.AsyncClient) -> None:
    name, password = f"u{_uid()}", "Passw0rd!x"
    made = await admin.post(
        f"{API}/users",
        json={
            "username": name,
            "email": f"{name}@example.org",
            "realname": name,
            "password": password,
        },
    )
    assert made.status_code == 201
    async with make_client(app) as client:
        csrf = await sign_in(client, name, password)
        dashboard = await client.get("/harbor/dashboard")
        assert "/admin/registries" not in dashboard.text
        assert "/admin/replications" not in dashboard.text
        for path in (
            REGISTRIES,
            f"{REGISTRIES}/new",
            f"{REGISTRIES}/1/edit",
            RULES,
            f"{RULES}/new",
            f"{RULES}/1",
            f"{RULES}/1/edit",
            f"{RULES}/1/executions/1",
            f"{RULES}/1/executions/1/tasks/1/log",
        ):
            assert (await client.get(path)).status_code == 403, path
        refused = await client.post(
            REGISTRIES,
            data={
                "_csrf": csrf,
                "name": "x",
                "type": "docker-registry",
                "url": "http://127.0.0.1:1",
            },
        )
        assert refused.status_code == 403
    assert (await admin.get(f"{API}/registries", params={"q": "name=x"})).json() == []

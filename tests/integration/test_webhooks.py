"""Webhooks end to end through the app: policies, events from real pushes, pulls and
deletions, delivery to a real HTTP receiver on 127.0.0.1, retries, failures and the
history the API shows (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette
from tests.integration.conftest import make_client
from tests.integration.registry_helpers import OCI_MANIFEST, digest_of, error_code, push_image
from tests.support.certs import self_signed
from tests.support.hostile_http import PATTERN, connections_made, hostile_server, suspicious

from dockyard.errors import DeniedError
from dockyard.http import outbound
from dockyard.http.egress import IPAddress
from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password
from dockyard.jobs.models import Execution
from dockyard.registry.hooks import ManifestPush, NoHooks, RegistryHooks
from dockyard.webhooks import hooks as webhook_hooks
from dockyard.webhooks import service
from dockyard.webhooks.repository import VENDOR_TYPE

API = "/api/v2.0"
PASSWORD = "Passw0rdPassw0rd"
SKIP = {"X-Dockyard-Contract": "skip"}
ROLES = {"admin": 1, "developer": 2, "guest": 3, "maintainer": 4}
SECRET = "Bearer s3cr3t-token"


# --- a real receiver -------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST; answers ``fail_first`` 500s
    before answering 200."""

    url: str = ""
    fail_first: int = 0
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wanted(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    async def wait_for(self, path: str, count: int, within: float = 20) -> list[Received]:
        deadline = time.monotonic() + within
        while len(self.wanted(path)) < count:
            assert time.monotonic() < deadline, f"{path}: {len(self.wanted(path))} of {count}"
            await asyncio.sleep(0.05)
        return self.wanted(path)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from _serve(None)


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[Receiver]:
    """The receiver behind HTTPS with a self-signed certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*_self_signed(tmp_path))
    yield from _serve(context)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    pair = self_signed(ca=False)
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(pair.cert_pem)
    key_path.write_bytes(pair.key_pem)
    return cert_path, key_path


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client refusing our certificate is part of the test


def _serve(tls: ssl.SSLContext | None) -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with state.lock:
                state.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                failing = state.fail_first > 0
                if failing:
                    state.fail_first -= 1
            self.send_response(500 if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if tls is not None else "http"
    state.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """An address where nothing listens (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/down"


# --- helpers ---------------------------------------------------------------------------------


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


async def new_project(admin: httpx.AsyncClient, **extra: Any) -> tuple[str, int]:
    name = _name("wh")
    body = {"project_name": name, "metadata": {"public": "false"}, **extra}
    response = await admin.post(f"{API}/projects", json=body)
    assert response.status_code == 201, response.text
    return name, int(response.headers["location"].rsplit("/", 1)[1])


async def member(admin: httpx.AsyncClient, state: AppState, project: str, role: str) -> str:
    username = await new_user(state)
    response = await admin.post(
        f"{API}/projects/{project}/members",
        json={"role_id": ROLES[role], "member_user": {"username": username}},
    )
    assert response.status_code == 201, response.text
    return username


async def new_user(state: AppState) -> str:
    username = _name("u")
    async with state.db.write() as session:
        session.add(User(username=username, password=hash_password(PASSWORD)))
    return username


def policy(
    address: str,
    events: list[str],
    *,
    name: str | None = None,
    payload_format: str = "Default",
    notify_type: str = "http",
    auth_header: str = SECRET,
) -> dict[str, Any]:
    return {
        "name": name or _name("policy"),
        "description": "test policy",
        "enabled": True,
        "event_types": events,
        "targets": [
            {
                "type": notify_type,
                "address": address,
                "auth_header": auth_header,
                "skip_cert_verify": False,
                "payload_format": payload_format,
            }
        ],
    }


async def create_policy(client: httpx.AsyncClient, project: str, body: dict[str, Any]) -> int:
    response = await client.post(f"{API}/projects/{project}/webhook/policies", json=body)
    assert response.status_code == 201, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


async def executions(
    client: httpx.AsyncClient, project: str, policy_id: int
) -> list[dict[str, Any]]:
    response = await client.get(f"{API}/projects/{project}/webhook/policies/{policy_id}/executions")
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


async def wait_final(
    client: httpx.AsyncClient, project: str, policy_id: int, count: int, within: float = 30
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        found = await executions(client, project, policy_id)
        if len(found) >= count and all(
            e["status"] in ("Success", "Error", "Stopped") for e in found
        ):
            return found
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.1)


async def execution_count(state: AppState, policy_id: int) -> int:
    async with state.db.read() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Execution)
            .where(Execution.vendor_type == VENDOR_TYPE, Execution.vendor_id == policy_id)
        )
    return int(count or 0)


@pytest.fixture
async def notifications_on(admin: httpx.AsyncClient) -> AsyncIterator[None]:
    """Every test leaves ``notification_enable`` on, however it ends."""
    yield
    response = await admin.put(f"{API}/configurations", json={"notification_enable": True})
    assert response.status_code == 200, response.text


# --- deliveries ------------------------------------------------------------------------------


async def test_push_pull_delete_are_each_delivered_once_in_both_formats(
    admin: httpx.AsyncClient, state: AppState, receiver: Receiver
) -> None:
    host = urlsplit(state.settings.public_url).netloc
    project, project_id = await new_project(admin)
    events = ["PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT"]
    default_id = await create_policy(admin, project, policy(receiver.url + "/default", events))
    cloud_id = await create_policy(
        admin,
        project,
        policy(receiver.url + "/cloud", events, payload_format="CloudEvents", auth_header=""),
    )
    repository = f"{project}/app"
    digest, _ = await push_image(admin, repository, "1.0", seed=b"webhooks")

    (push,) = await receiver.wait_for("/default", 1)
    assert push.headers["authorization"] == SECRET
    assert push.headers["content-type"] == "application/json"
    body = push.json()
    assert body["type"] == "PUSH_ARTIFACT"
    assert body["operator"] == "admin"
    assert isinstance(body["occur_at"], int)
    assert body["event_data"]["resources"] == [
        {"digest": digest, "tag": "1.0", "resource_url": f"{host}/{repository}:1.0"}
    ]
    repo_info = body["event_data"]["repository"]
    assert repo_info["name"] == "app"
    assert repo_info["namespace"] == project
    assert repo_info["repo_full_name"] == repository
    assert repo_info["repo_type"] == "private"
    assert isinstance(repo_info["date_created"], int)

    (cloud_push,) = await receiver.wait_for("/cloud", 1)
    assert "authorization" not in cloud_push.headers
    assert cloud_push.headers["content-type"] == "application/cloudevents+json"
    event = cloud_push.json()
    assert event["specversion"] == "1.0"
    assert event["type"] == "harbor.artifact.pushed"
    assert event["source"] == f"/projects/{project_id}/webhook/policies/{cloud_id}"
    assert event["datacontenttype"] == "application/json"
    assert event["operator"] == "admin"
    assert event["id"] and event["time"].endswith("Z")
    assert event["data"]["resources"][0]["digest"] == digest

    pulled = await admin.get(f"/v2/{repository}/manifests/1.0", headers={"Accept": OCI_MANIFEST})
    assert pulled.status_code == 200
    pull = (await receiver.wait_for("/default", 2))[1].json()
    assert pull["type"] == "PULL_ARTIFACT"
    assert pull["event_data"]["resources"][0]["tag"] == "1.0"
    cloud_pull = (await receiver.wait_for("/cloud", 2))[1].json()
    assert cloud_pull["type"] == "harbor.artifact.pulled"

    deleted = await admin.delete(f"/v2/{repository}/manifests/{digest}")
    assert deleted.status_code == 202
    delete = (await receiver.wait_for("/default", 3))[2].json()
    assert delete["type"] == "DELETE_ARTIFACT"
    assert delete["event_data"]["resources"] == [
        {"digest": digest, "tag": "1.0", "resource_url": f"{host}/{repository}:1.0"}
    ]
    assert (await receiver.wait_for("/cloud", 3))[2].json()["type"] == "harbor.artifact.deleted"

    # Once each: nothing more arrives, and every execution succeeded with one task.
    await asyncio.sleep(1.5)
    assert len(receiver.wanted("/default")) == 3
    assert len(receiver.wanted("/cloud")) == 3
    for policy_id in (default_id, cloud_id):
        done = await wait_final(admin, project, policy_id, 3)
        assert [e["status"] for e in done] == ["Success"] * 3
        assert {e["extra_attrs"]["event_type"] for e in done} == set(events)
        assert all(e["trigger"] == "EVENT" and e["vendor_type"] == "WEBHOOK" for e in done)
        assert all(e["metrics"]["success_task_count"] == 1 for e in done)


async def test_a_failing_receiver_is_retried_and_the_failures_are_logged(
    admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    project, _ = await new_project(admin)
    policy_id = await create_policy(
        admin, project, policy(receiver.url + "/flaky", ["PUSH_ARTIFACT"])
    )
    receiver.fail_first = 2
    await push_image(admin, f"{project}/app", "v1", seed=b"flaky")

    (execution,) = await wait_final(admin, project, policy_id, 1)
    assert execution["status"] == "Success"
    assert len(receiver.wanted("/flaky")) == 3
    bodies = {r.body for r in receiver.wanted("/flaky")}
    assert len(bodies) == 1  # every retry sends the same event

    base = f"{API}/projects/{project}/webhook/policies/{policy_id}/executions/{execution['id']}"
    tasks = (await admin.get(f"{base}/tasks")).json()
    assert len(tasks) == 1 and tasks[0]["status"] == "Success"
    assert tasks[0]["run_count"] == 3
    assert tasks[0]["extra_attrs"]["status_code"] == 200
    assert "auth_header" not in json.dumps(tasks[0])
    log = await admin.get(f"{base}/tasks/{tasks[0]['id']}/log")
    assert log.status_code == 200
    assert log.text.count("answered 500 in") == 2
    assert log.text.count("answered 200 in") == 1
    assert "attempt 1 failed" in log.text
    assert SECRET not in log.text and "s3cr3t" not in log.text


async def test_a_receiver_that_is_down_ends_in_error_everywhere(
    admin: httpx.AsyncClient,
) -> None:
    project, _ = await new_project(admin)
    body = policy(closed_port_url(), ["PUSH_ARTIFACT"], name="down")
    policy_id = await create_policy(admin, project, body)
    await push_image(admin, f"{project}/app", "v1", seed=b"down")

    (execution,) = await wait_final(admin, project, policy_id, 1)
    assert execution["status"] == "Error"
    assert execution["metrics"]["error_task_count"] == 1
    assert "could not be reached" in execution["status_message"]
    base = f"{API}/projects/{project}/webhook/policies/{policy_id}/executions/{execution['id']}"
    (task,) = (await admin.get(f"{base}/tasks")).json()
    assert task["status"] == "Error" and task["run_count"] == 4
    log = (await admin.get(f"{base}/tasks/{task['id']}/log")).text
    assert log.count("no answer after") == 4
    assert "s3cr3t" not in log

    triggers = (await admin.get(f"{API}/projects/{project}/webhook/lasttrigger")).json()
    assert [(t["policy_name"], t["event_type"]) for t in triggers] == [("down", "PUSH_ARTIFACT")]
    assert triggers[0]["last_trigger_time"] and triggers[0]["enabled"] is True

    jobs = await admin.get(
        f"{API}/projects/{project}/webhook/jobs", params={"policy_id": policy_id}
    )
    assert jobs.status_code == 200
    assert [(j["status"], j["event_type"], j["notify_type"]) for j in jobs.json()] == [
        ("Error", "PUSH_ARTIFACT", "http")
    ]
    assert "s3cr3t" not in jobs.text
    only_success = await admin.get(
        f"{API}/projects/{project}/webhook/jobs",
        params={"policy_id": policy_id, "status": "Success"},
    )
    assert only_success.json() == []


async def test_skip_cert_verify_decides_whether_a_self_signed_receiver_is_trusted(
    admin: httpx.AsyncClient, tls_receiver: Receiver
) -> None:
    project, _ = await new_project(admin)
    trusting = policy(tls_receiver.url + "/skip", ["PUSH_ARTIFACT"])
    trusting["targets"][0]["skip_cert_verify"] = True
    trusting_id = await create_policy(admin, project, trusting)
    verifying_id = await create_policy(
        admin, project, policy(tls_receiver.url + "/verify", ["PUSH_ARTIFACT"])
    )
    await push_image(admin, f"{project}/app", "v1", seed=b"tls")

    (received,) = await tls_receiver.wait_for("/skip", 1)
    assert received.headers["authorization"] == SECRET
    (trusted,) = await wait_final(admin, project, trusting_id, 1)
    assert trusted["status"] == "Success"
    (refused,) = await wait_final(admin, project, verifying_id, 1)
    assert refused["status"] == "Error"
    assert "certificate" in refused["status_message"].lower()
    assert tls_receiver.wanted("/verify") == []


async def test_slack_targets_get_a_slack_message(
    admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    project, _ = await new_project(admin)
    await create_policy(
        admin,
        project,
        policy(receiver.url + "/slack", ["PUSH_ARTIFACT"], notify_type="slack", auth_header=""),
    )
    await push_image(admin, f"{project}/app", "v1", seed=b"slack")
    (message,) = await receiver.wait_for("/slack", 1)
    text = message.json()["text"]
    assert "PUSH_ARTIFACT" in text and f"{project}/app" in text


async def test_quota_refusals_are_sent_as_quota_exceed(
    admin: httpx.AsyncClient, state: AppState, receiver: Receiver
) -> None:
    project, _ = await new_project(admin, storage_limit=10)
    events = ["QUOTA_EXCEED", "PUSH_ARTIFACT"]
    policy_id = await create_policy(admin, project, policy(receiver.url + "/quota", events))
    config = b"x" * 64
    refused = await admin.post(
        f"/v2/{project}/app/blobs/uploads/",
        params={"digest": digest_of(config)},
        content=config,
    )
    assert refused.status_code == 403
    (received,) = await receiver.wait_for("/quota", 1)
    body = received.json()
    assert body["type"] == "QUOTA_EXCEED"
    assert "quota exceeded" in body["event_data"]["custom_attributes"]["Details"]
    await asyncio.sleep(0.5)
    assert await execution_count(state, policy_id) == 1  # the refused upload pushed nothing


async def test_quota_warning_once_when_usage_crosses_85_percent(
    admin: httpx.AsyncClient, state: AppState, receiver: Receiver
) -> None:
    project, _ = await new_project(admin, storage_limit=1000)
    policy_id = await create_policy(
        admin, project, policy(receiver.url + "/warning", ["QUOTA_WARNING"])
    )

    async def upload(size: int, fill: bytes) -> None:
        blob = fill * size
        response = await admin.post(
            f"/v2/{project}/app/blobs/uploads/", params={"digest": digest_of(blob)}, content=blob
        )
        assert response.status_code == 201, response.text

    await upload(500, b"a")  # 50 %: below the threshold
    await upload(400, b"b")  # 90 %: crosses it
    await upload(50, b"c")  # 95 %: already over, no second warning
    (received,) = await receiver.wait_for("/warning", 1)
    body = received.json()
    assert body["type"] == "QUOTA_WARNING"
    assert "900 of 1000 bytes" in body["event_data"]["custom_attributes"]["Details"]
    assert body["event_data"]["repository"]["repo_full_name"] == f"{project}/app"
    await asyncio.sleep(0.5)
    assert len(receiver.wanted("/warning")) == 1
    assert await execution_count(state, policy_id) == 1


async def test_other_features_emit_through_the_service(
    admin: httpx.AsyncClient, state: AppState, receiver: Receiver
) -> None:
    """``service.emit`` (tag retention's way in) enqueues with the caller's transaction."""
    project, project_id = await new_project(admin)
    await create_policy(admin, project, policy(receiver.url + "/retention", ["TAG_RETENTION"]))
    data = {"retention": {"total": 2, "retained": 1}}

    async def emit_then_fail() -> None:
        async with state.db.write() as session:
            assert await service.emit(session, project_id, "TAG_RETENTION", data, "system") == 1
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        await emit_then_fail()
    async with state.db.write() as session:
        assert await service.emit(session, project_id, "PUSH_ARTIFACT", data, "system") == 0
        assert await service.emit(session, project_id, "TAG_RETENTION", data, "system") == 1
    (received,) = await receiver.wait_for("/retention", 1)
    assert received.json()["type"] == "TAG_RETENTION"
    assert received.json()["event_data"] == data
    await asyncio.sleep(0.5)
    assert len(receiver.wanted("/retention")) == 1


# --- nothing sent ----------------------------------------------------------------------------


class RefuseAfterPush(NoHooks):
    """A hook after the webhooks' one that refuses every push (so it rolls back)."""

    async def after_manifest_push(self, session: AsyncSession, push: ManifestPush) -> None:
        raise DeniedError("refused by the test, after the webhooks hook ran")


async def test_a_rolled_back_push_sends_nothing(
    admin: httpx.AsyncClient, state: AppState, receiver: Receiver
) -> None:
    project, _ = await new_project(admin)
    policy_id = await create_policy(admin, project, policy(receiver.url + "/rb", ["PUSH_ARTIFACT"]))
    original = state.registry.hooks
    state.registry.hooks = RegistryHooks([*original.hooks, RefuseAfterPush()])
    try:
        await push_image_refused(admin, f"{project}/app")
    finally:
        state.registry.hooks = original
    await asyncio.sleep(1.0)
    assert receiver.wanted("/rb") == []
    assert await execution_count(state, policy_id) == 0


async def push_image_refused(client: httpx.AsyncClient, repository: str) -> None:
    with pytest.raises(AssertionError, match="DENIED"):
        await push_image(client, repository, "v1", seed=b"rolled-back")
    refused = await client.get(f"/v2/{repository}/manifests/v1")
    assert refused.status_code == 404 and error_code(refused) == "MANIFEST_UNKNOWN"


async def test_the_global_switch_off_sends_nothing(
    admin: httpx.AsyncClient, state: AppState, receiver: Receiver, notifications_on: None
) -> None:
    project, _ = await new_project(admin)
    events = ["PUSH_ARTIFACT", "PULL_ARTIFACT"]
    policy_id = await create_policy(admin, project, policy(receiver.url + "/off", events))
    off = await admin.put(f"{API}/configurations", json={"notification_enable": False})
    assert off.status_code == 200
    shown = (await admin.get(f"{API}/configurations")).json()["notification_enable"]
    assert shown == {"value": False, "editable": True}
    await push_image(admin, f"{project}/app", "v1", seed=b"off")
    assert (await admin.get(f"/v2/{project}/app/manifests/v1")).status_code == 200
    await asyncio.sleep(2.0)  # the pull batch is written within a second
    assert receiver.wanted("/off") == []
    assert await execution_count(state, policy_id) == 0

    on = await admin.put(f"{API}/configurations", json={"notification_enable": True})
    assert on.status_code == 200
    await push_image(admin, f"{project}/app", "v2", seed=b"on")
    (received,) = await receiver.wait_for("/off", 1)
    assert received.json()["event_data"]["resources"][0]["tag"] == "v2"


async def test_disabled_policies_and_other_events_send_nothing(
    admin: httpx.AsyncClient, state: AppState, receiver: Receiver
) -> None:
    project, _ = await new_project(admin)
    disabled = policy(receiver.url + "/disabled", ["PUSH_ARTIFACT"])
    disabled["enabled"] = False
    disabled_id = await create_policy(admin, project, disabled)
    deletes_id = await create_policy(
        admin, project, policy(receiver.url + "/deletes", ["DELETE_ARTIFACT"])
    )
    await push_image(admin, f"{project}/app", "v1", seed=b"quiet")
    assert (await admin.get(f"/v2/{project}/app/manifests/v1")).status_code == 200
    await asyncio.sleep(1.5)
    assert receiver.requests == []
    assert await execution_count(state, disabled_id) == 0
    assert await execution_count(state, deletes_id) == 0


async def test_pulls_in_projects_without_pull_policies_queue_nothing(
    admin: httpx.AsyncClient, state: AppState, receiver: Receiver
) -> None:
    hook = webhook_hooks.find(state.registry.hooks.hooks)
    assert hook is not None
    project, _ = await new_project(admin)
    await create_policy(admin, project, policy(receiver.url + "/pushes", ["PUSH_ARTIFACT"]))
    await push_image(admin, f"{project}/app", "v1", seed=b"cheap")
    await receiver.wait_for("/pushes", 1)
    await admin.get(f"/v2/{project}/app/manifests/v1")  # loads the subscribers once
    await hook.flush()
    for _ in range(20):
        assert (await admin.get(f"/v2/{project}/app/manifests/v1")).status_code == 200
    assert hook.queued == 0
    await asyncio.sleep(0.2)
    assert len(receiver.wanted("/pushes")) == 1


# --- policies: CRUD, validation, access --------------------------------------------------------


async def test_policy_crud_and_validation(admin: httpx.AsyncClient, receiver: Receiver) -> None:
    project, project_id = await new_project(admin)
    base = f"{API}/projects/{project}/webhook/policies"
    body = policy(receiver.url + "/crud", ["PUSH_ARTIFACT", "PUSH_ARTIFACT"], name="first")
    policy_id = await create_policy(admin, project, body)

    got = await admin.get(f"{base}/{policy_id}")
    assert got.status_code == 200
    shown = got.json()
    assert shown["name"] == "first" and shown["project_id"] == project_id
    assert shown["event_types"] == ["PUSH_ARTIFACT"]
    assert shown["creator"] == "admin" and shown["enabled"] is True
    assert shown["targets"] == [
        {
            "type": "http",
            "address": receiver.url + "/crud",
            "auth_header": SECRET,
            "skip_cert_verify": False,
            "payload_format": "Default",
        }
    ]
    by_id = await admin.get(f"{API}/projects/{project_id}/webhook/policies/{policy_id}")
    assert by_id.json()["name"] == "first"

    duplicate = await admin.post(
        base, json=policy(receiver.url, ["PUSH_ARTIFACT"], name="first"), headers=SKIP
    )
    assert duplicate.status_code == 409
    for bad in (
        policy("ftp://example.com/x", ["PUSH_ARTIFACT"]),
        policy("not a url", ["PUSH_ARTIFACT"]),
        policy("", ["PUSH_ARTIFACT"]),
        policy(receiver.url, ["NO_SUCH_EVENT"]),
        policy(receiver.url, []),
        policy(receiver.url, ["PUSH_ARTIFACT"], payload_format="Yaml"),
        policy(receiver.url, ["PUSH_ARTIFACT"], notify_type="email"),
        policy(receiver.url, ["PUSH_ARTIFACT"], auth_header="x\r\nX-Injected: 1"),
        {**policy(receiver.url, ["PUSH_ARTIFACT"]), "targets": []},
        {**policy(receiver.url, ["PUSH_ARTIFACT"]), "name": "  "},
    ):
        response = await admin.post(base, json=bad)
        assert response.status_code == 400, (bad, response.text)

    second = await create_policy(
        admin, project, policy(receiver.url, ["PULL_ARTIFACT"], name="second")
    )
    listed = await admin.get(base, params={"sort": "-id", "page_size": 1})
    assert listed.status_code == 200 and listed.headers["x-total-count"] == "2"
    assert [p["id"] for p in listed.json()] == [second]
    named = await admin.get(base, params={"q": "name=second"})
    assert [p["name"] for p in named.json()] == ["second"]

    renamed = await admin.put(f"{base}/{policy_id}", json={"name": "second"}, headers=SKIP)
    assert renamed.status_code == 409
    updated = await admin.put(
        f"{base}/{policy_id}",
        json={"name": "renamed", "enabled": False, "event_types": ["DELETE_ARTIFACT"]},
    )
    assert updated.status_code == 200
    shown = (await admin.get(f"{base}/{policy_id}")).json()
    assert (shown["name"], shown["enabled"], shown["event_types"]) == (
        "renamed",
        False,
        ["DELETE_ARTIFACT"],
    )
    assert shown["targets"][0]["address"] == receiver.url + "/crud"
    bad_update = await admin.put(f"{base}/{policy_id}", json={"event_types": ["NOPE"]})
    assert bad_update.status_code == 400

    events = await admin.get(f"{API}/projects/{project}/webhook/events")
    assert events.status_code == 200
    supported = events.json()
    assert "PUSH_ARTIFACT" in supported["event_type"] and "TAG_RETENTION" in supported["event_type"]
    assert supported["notify_type"] == ["http", "slack"]
    assert {"notify_type": "http", "formats": ["Default", "CloudEvents"]} in supported[
        "payload_formats"
    ]

    assert (await admin.delete(f"{base}/{policy_id}")).status_code == 200
    assert (await admin.get(f"{base}/{policy_id}")).status_code == 404
    assert (await admin.delete(f"{base}/{policy_id}")).status_code == 404
    other, _ = await new_project(admin)
    elsewhere = await admin.get(f"{API}/projects/{other}/webhook/policies/{second}")
    assert elsewhere.status_code == 404
    foreign_jobs = await admin.get(
        f"{API}/projects/{other}/webhook/jobs", params={"policy_id": second}
    )
    assert foreign_jobs.status_code == 200 and foreign_jobs.json() == []


async def test_who_may_see_and_change_policies(
    app: Starlette, admin: httpx.AsyncClient, anon: httpx.AsyncClient, state: AppState
) -> None:
    project, _ = await new_project(admin)
    base = f"{API}/projects/{project}/webhook/policies"
    policy_id = await create_policy(
        admin, project, policy("http://127.0.0.1:9/x", ["PUSH_ARTIFACT"])
    )
    project_admin = await member(admin, state, project, "admin")
    maintainer = await member(admin, state, project, "maintainer")
    developer = await member(admin, state, project, "developer")
    outsider = await new_user(state)

    async with make_client(app, (project_admin, PASSWORD)) as client:
        created = await client.post(base, json=policy("http://127.0.0.1:9/y", ["PULL_ARTIFACT"]))
        assert created.status_code == 201
        assert (await client.get(base)).status_code == 200
        assert (await client.put(f"{base}/{policy_id}", json={"enabled": False})).status_code == 200
    async with make_client(app, (maintainer, PASSWORD)) as client:
        assert (await client.get(base)).status_code == 200
        assert (await client.get(f"{base}/{policy_id}")).status_code == 200
        assert (await client.get(f"{base}/{policy_id}/executions")).status_code == 200
        assert (
            await client.get(f"{API}/projects/{project}/webhook/lasttrigger")
        ).status_code == 200
        refused = await client.post(base, json=policy("http://127.0.0.1:9/z", ["PUSH_ARTIFACT"]))
        assert refused.status_code == 403
        assert (await client.put(f"{base}/{policy_id}", json={"enabled": True})).status_code == 403
        assert (await client.delete(f"{base}/{policy_id}")).status_code == 403
    async with make_client(app, (developer, PASSWORD)) as client:
        assert (await client.get(base)).status_code == 403
        assert (await client.get(f"{base}/{policy_id}")).status_code == 403
        assert (await client.get(f"{API}/projects/{project}/webhook/events")).status_code == 403
    async with make_client(app, (outsider, PASSWORD)) as client:
        assert (await client.get(base, headers=SKIP)).status_code == 404
        assert (await client.get(f"{base}/{policy_id}")).status_code == 404
        hidden = await client.post(
            base, json=policy("http://127.0.0.1:9/z", ["PUSH_ARTIFACT"]), headers=SKIP
        )
        assert hidden.status_code == 404
    assert (await anon.get(base)).status_code == 401
    assert (await anon.get(f"{base}/{policy_id}")).status_code == 401
    assert (await anon.get(f"{API}/projects/{project}/webhook/lasttrigger")).status_code == 401


# --- bounded answers and the egress policy ----------------------------------------------------


async def task_of(
    client: httpx.AsyncClient, project: str, policy_id: int, execution_id: int
) -> tuple[dict[str, Any], str]:
    """The execution's one task and its log."""
    base = f"{API}/projects/{project}/webhook/policies/{policy_id}/executions/{execution_id}"
    (task,) = (await client.get(f"{base}/tasks")).json()
    log = await client.get(f"{base}/tasks/{task['id']}/log")
    assert log.status_code == 200
    return task, log.text


async def test_an_endless_answer_is_cut_short_and_its_start_is_logged(
    admin: httpx.AsyncClient,
) -> None:
    project, _ = await new_project(admin)
    with hostile_server("endless") as target:
        policy_id = await create_policy(
            admin, project, policy(target.url + "/hook", ["PUSH_ARTIFACT"])
        )
        started = time.monotonic()
        await push_image(admin, f"{project}/app", "v1", seed=b"endless")
        (execution,) = await wait_final(admin, project, policy_id, 1)
        elapsed = time.monotonic() - started
        sent = target.body_bytes_sent
    assert execution["status"] == "Success"
    assert elapsed < 10  # the whole 600 MiB would not even have been read by then
    # What the target could push into the socket buffers before Dockyard hung up.
    assert sent < 64 * 1024 * 1024, sent
    task, log = await task_of(admin, project, policy_id, execution["id"])
    assert task["run_count"] == 1
    assert "answered 200 in" in log
    assert f"answer began: {PATTERN[:1024].decode()} …" in log


async def test_targets_the_egress_policy_refuses_are_a_400_when_saved(
    admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    project, _ = await new_project(admin)
    base = f"{API}/projects/{project}/webhook/policies"
    for address, reason in (
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata"),
        ("https://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata address"),
        ("http://metadata.google.internal/v1/", "metadata.google.internal is a cloud metadata"),
        ("http://169.254.10.1:8080/hook", "169.254.10.1 is a link-local address"),
        ("http://[fe80::1]/hook", "fe80::1 is a link-local address"),
        ("http://0.0.0.0:9/hook", "0.0.0.0 is an unspecified address"),
        ("http://2852039166/", "169.254.169.254 is a cloud metadata address"),
    ):
        response = await admin.post(base, json=policy(address, ["PUSH_ARTIFACT"]))
        assert response.status_code == 400, (address, response.text)
        message = response.json()["errors"][0]["message"]
        assert message.startswith("targets[0].address is refused by the egress policy: ")
        assert reason in message, message

    policy_id = await create_policy(admin, project, policy(receiver.url, ["PUSH_ARTIFACT"]))
    moved = await admin.put(
        f"{base}/{policy_id}",
        json={"targets": [{"type": "http", "address": "http://169.254.169.254/"}]},
    )
    assert moved.status_code == 400
    assert "cloud metadata" in moved.json()["errors"][0]["message"]
    kept = (await admin.get(f"{base}/{policy_id}")).json()
    assert kept["targets"][0]["address"] == receiver.url


async def test_a_target_whose_name_resolves_to_metadata_fails_at_once_without_connecting(
    admin: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []
    system_resolver = outbound.resolve_host

    async def resolver(host: str, port: int) -> list[IPAddress]:
        if host != "hooks.internal.test":
            return await system_resolver(host, port)
        lookups.append(host)
        return [ipaddress.ip_address("169.254.169.254")]

    monkeypatch.setattr(outbound, "resolve_host", resolver)
    project, _ = await new_project(admin)
    # A name cannot be judged before it is resolved: saving it is fine.
    policy_id = await create_policy(
        admin, project, policy("http://hooks.internal.test:8080/hook", ["PUSH_ARTIFACT"])
    )
    with connections_made() as seen:
        await push_image(admin, f"{project}/app", "v1", seed=b"metadata")
        (execution,) = await wait_final(admin, project, policy_id, 1)
    refusal = (
        "refused by the egress policy: hooks.internal.test resolves to 169.254.169.254,"
        " which is a cloud metadata address (never allowed)"
    )
    assert execution["status"] == "Error"
    assert refusal in execution["status_message"]
    task, log = await task_of(admin, project, policy_id, execution["id"])
    assert task["run_count"] == 1  # retrying cannot change the policy
    assert f"not sent: {refusal}" in log
    assert "s3cr3t" not in log
    assert lookups == ["hooks.internal.test"]
    assert suspicious(seen, 8080) == []


# --- Harbor's event types (issue 14 item 9) --------------------------------------------------


async def test_every_harbor_event_type_is_accepted_and_listed(admin: httpx.AsyncClient) -> None:
    project, _ = await new_project(admin)
    harbor = [
        "DELETE_ARTIFACT",
        "DELETE_TAG",
        "PULL_ARTIFACT",
        "PUSH_ARTIFACT",
        "QUOTA_EXCEED",
        "QUOTA_WARNING",
        "REPLICATION",
        "SCANNING_COMPLETED",
        "SCANNING_FAILED",
        "SCANNING_STOPPED",
        "TAG_RETENTION",
    ]
    listed = (await admin.get(f"{API}/projects/{project}/webhook/events")).json()
    assert sorted(listed["event_type"]) == harbor
    policy_id = await create_policy(admin, project, policy("http://127.0.0.1:9/all", harbor))
    shown = await admin.get(f"{API}/projects/{project}/webhook/policies/{policy_id}")
    assert sorted(shown.json()["event_types"]) == harbor
    triggers = await admin.get(f"{API}/projects/{project}/webhook/lasttrigger")
    assert sorted(t["event_type"] for t in triggers.json()) == harbor


async def test_a_multi_platform_push_sends_one_push_event_and_tag_deletion_sends_delete_tag(
    admin: httpx.AsyncClient, state: AppState, receiver: Receiver
) -> None:
    project, _ = await new_project(admin)
    events = ["PUSH_ARTIFACT", "DELETE_TAG", "DELETE_ARTIFACT"]
    policy_id = await create_policy(admin, project, policy(receiver.url + "/multi", events))
    repository = f"{project}/app"
    children = [await push_image(admin, repository, None, seed=s) for s in (b"amd", b"arm")]
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": d, "size": len(body)} for d, body in children
        ],
    }
    index_body = json.dumps(index).encode()
    pushed = await admin.put(
        f"/v2/{repository}/manifests/1.0",
        content=index_body,
        headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
    )
    assert pushed.status_code == 201, pushed.text
    (push,) = await receiver.wait_for("/multi", 1)
    assert push.json()["type"] == "PUSH_ARTIFACT"
    assert push.json()["event_data"]["resources"][0]["digest"] == digest_of(index_body)
    assert push.json()["event_data"]["resources"][0]["tag"] == "1.0"

    # A second tag, then its deletion: the artifact stays, DELETE_TAG names the tag.
    retag = await admin.put(
        f"/v2/{repository}/manifests/extra",
        content=index_body,
        headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
    )
    assert retag.status_code == 201
    assert (await admin.delete(f"/v2/{repository}/manifests/extra")).status_code == 202
    received = await receiver.wait_for("/multi", 3)
    deleted = received[2].json()
    assert deleted["type"] == "DELETE_TAG"
    assert deleted["event_data"]["resources"][0]["tag"] == "extra"
    assert deleted["event_data"]["resources"][0]["digest"] == digest_of(index_body)
    await asyncio.sleep(1)
    assert [r.json()["type"] for r in receiver.wanted("/multi")] == [
        "PUSH_ARTIFACT",
        "PUSH_ARTIFACT",
        "DELETE_TAG",
    ]
    assert await execution_count(state, policy_id) == 3

"""Audit events forwarded to a real syslog listener (TCP and UDP sockets in this test),
on SQLite and PostgreSQL.

The listeners parse what they receive as RFC 6587 octet-counted frames (TCP) or one
message per datagram (UDP) and each message with the strict RFC 5424 reader of
``tests/unit/test_syslog.py``. Events come from real actions through the API and
the registry. Forwarding never fails nor slows a request, even when the endpoint
is down, and ``skip_audit_log_database`` forwards without storing.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from tests.integration.registry_helpers import push_image
from tests.unit.test_syslog import Rfc5424, parse_rfc5424, split_octet_counted

from dockyard.audit import forwarding, refusals
from dockyard.audit import hooks as audit_hooks
from dockyard.audit import service as audit
from dockyard.audit.events import Actor, AuditEvent
from dockyard.audit.models import AuditLog
from dockyard.audit.syslog import SyslogEvent, parse_endpoint
from dockyard.db.base import utcnow
from dockyard.http.state import AppState
from dockyard.registry.models import Repository

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONFIG = "/api/v2.0/configurations"
ENDPOINT = "audit_log_forward_endpoint"
SKIP = "skip_audit_log_database"
SD = "audit@32473"


class Listener:
    """A local syslog server: what it received, parsed."""

    def __init__(self) -> None:
        self.messages: list[Rfc5424] = []
        self.connections: list[asyncio.StreamWriter] = []
        self.endpoint = ""

    async def wait_for(self, found: Callable[[Rfc5424], bool], within: float = 10.0) -> Rfc5424:
        deadline = time.monotonic() + within
        while True:
            for message in self.messages:
                if found(message):
                    return message
            assert time.monotonic() < deadline, [m.msgid for m in self.messages][-20:]
            await asyncio.sleep(0.02)

    def about(self, resource: str) -> list[Rfc5424]:
        return [m for m in self.messages if m.sd[SD]["resource"] == resource]


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.listener.messages.append(parse_rfc5424(data))


@pytest.fixture
async def tcp_listener() -> AsyncIterator[Listener]:
    listener = Listener()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        listener.connections.append(writer)
        buffer = b""
        while chunk := await reader.read(65536):
            frames, buffer = split_octet_counted(buffer + chunk)
            listener.messages.extend(parse_rfc5424(frame) for frame in frames)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    listener.endpoint = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield listener
    finally:
        for writer in listener.connections:
            writer.close()
        server.close()


@pytest.fixture
async def udp_listener() -> AsyncIterator[Listener]:
    listener = Listener()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Datagrams(listener), local_addr=("127.0.0.1", 0)
    )
    listener.endpoint = f"udp://127.0.0.1:{transport.get_extra_info('sockname')[1]}"
    try:
        yield listener
    finally:
        transport.close()


@pytest.fixture
async def configure(admin: httpx.AsyncClient) -> AsyncIterator[Callable[..., object]]:
    """Set the forwarding items; they are switched off again after the test."""

    async def put(**items: object) -> None:
        response = await admin.put(CONFIG, json=items)
        assert response.status_code == 200, response.text

    yield put
    await put(**{SKIP: False, ENDPOINT: ""})


def _uid(stem: str) -> str:
    return f"{stem}{uuid.uuid4().hex[:10]}"


async def _rows(state: AppState, resource: str) -> list[AuditLog]:
    async with state.db.read() as session:
        rows = await session.scalars(select(AuditLog).where(AuditLog.resource == resource))
        return list(rows)


def _is(event_type: str, resource: str) -> Callable[[Rfc5424], bool]:
    return lambda m: m.msgid == event_type and m.sd[SD]["resource"] == resource


def _recent(message: Rfc5424) -> bool:
    sent = datetime.fromisoformat(message.timestamp.replace("Z", "+00:00"))
    return abs(utcnow() - sent) < timedelta(minutes=1)


@pytest.fixture(autouse=True)
def _fresh_refusal_budget(state: AppState) -> None:
    """Earlier modules' floods of refusals (hostile-input sweeps) spend the audit writer's
    rate-limited row budget on this shared app; each test here starts with a full one."""
    hooks = getattr(state.registry.hooks, "hooks", ())
    hook = next(h for h in hooks if isinstance(h, audit_hooks.RegistryHooks))
    hook.refusals = refusals.RefusalQueue()


async def test_tcp_forwarding_of_real_actions(
    admin: httpx.AsyncClient,
    state: AppState,
    tcp_listener: Listener,
    configure: Callable[..., object],
) -> None:
    await configure(**{ENDPOINT: tcp_listener.endpoint.removeprefix("tcp://")})  # TCP by default
    project = _uid("fwd")
    created = await admin.post("/api/v2.0/projects", json={"project_name": project})
    assert created.status_code == 201
    message = await tcp_listener.wait_for(_is("create_project", project))
    assert (message.facility, message.severity) == (16, 6)
    assert message.app_name == "dockyard" and message.version == 1
    assert message.hostname == socket.gethostname()
    assert _recent(message)
    fields = message.sd[SD]
    assert fields["operation"] == "create"
    assert fields["resource_type"] == "project"
    assert fields["username"] == "admin"
    assert fields["client_ip"] == "127.0.0.1"
    assert fields["result"] == "success"
    assert int(fields["project_id"]) > 0
    assert json.loads(message.msg)["resource"] == project
    assert len(await _rows(state, project)) == 1  # stored as well

    digest, _ = await push_image(admin, f"{project}/app", "1.0", seed=b"forward")
    pushed = await tcp_listener.wait_for(_is("create_artifact", f"{project}/app:1.0"))
    assert pushed.sd[SD]["description"].startswith(f"push {digest}")

    # Pulls go through the batched writer, and are forwarded when it writes them.
    pulled = await admin.get(
        f"/v2/{project}/app/manifests/1.0",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert pulled.status_code == 200
    hooks = getattr(state.registry.hooks, "hooks", ())
    await next(h for h in hooks if isinstance(h, audit_hooks.RegistryHooks)).flush()
    await tcp_listener.wait_for(_is("pull_artifact", f"{project}/app:1.0"))

    # A refused write (a second project of the same name) is forwarded as a failure.
    again = await admin.post("/api/v2.0/projects", json={"project_name": project})
    assert again.status_code == 409
    refused = await tcp_listener.wait_for(
        lambda m: m.sd[SD]["result"] == "failure" and project in m.sd[SD]["description"]
    )
    assert refused.msgid == "create_project"
    assert refused.severity == 4

    # The listener dropping the connection: the next event comes on a new one.
    for writer in tcp_listener.connections:
        writer.close()
    await asyncio.sleep(0.1)
    second = _uid("fwd")
    assert (
        await admin.post("/api/v2.0/projects", json={"project_name": second})
    ).status_code == 201
    await tcp_listener.wait_for(_is("create_project", second))
    assert len(tcp_listener.connections) >= 2


async def test_udp_forwarding(
    admin: httpx.AsyncClient,
    state: AppState,
    udp_listener: Listener,
    configure: Callable[..., object],
) -> None:
    await configure(**{ENDPOINT: udp_listener.endpoint})
    project = _uid("udp")
    assert (
        await admin.post("/api/v2.0/projects", json={"project_name": project})
    ).status_code == 201
    message = await udp_listener.wait_for(_is("create_project", project))
    assert message.sd[SD]["username"] == "admin" and message.sd[SD]["result"] == "success"
    deleted = await admin.delete(f"/api/v2.0/projects/{project}")
    assert deleted.status_code == 200
    gone = await udp_listener.wait_for(_is("delete_project", project))
    assert gone.sd[SD]["operation"] == "delete"


async def test_only_committed_events_are_forwarded(
    state: AppState, tcp_listener: Listener, configure: Callable[..., object]
) -> None:
    await configure(**{ENDPOINT: tcp_listener.endpoint})
    rolled_back, committed = _uid("rb"), _uid("ok")
    actor = Actor("tester", "192.0.2.1")

    async def failing_change() -> None:
        async with state.db.write() as session:
            await audit.record(session, actor, AuditEvent("create", "label", rolled_back))
            raise RuntimeError("the change fails")

    with pytest.raises(RuntimeError):
        await failing_change()
    async with state.db.write() as session:
        await audit.record(session, actor, AuditEvent("create", "label", committed))
    await tcp_listener.wait_for(_is("create_label", committed))
    await asyncio.sleep(0.2)
    assert tcp_listener.about(rolled_back) == []
    assert await _rows(state, rolled_back) == []


async def test_skip_database_forwards_without_storing(
    admin: httpx.AsyncClient,
    state: AppState,
    tcp_listener: Listener,
    configure: Callable[..., object],
) -> None:
    refused = await admin.put(CONFIG, json={SKIP: True})
    assert refused.status_code == 400
    assert ENDPOINT in refused.json()["errors"][0]["message"]
    await configure(**{ENDPOINT: tcp_listener.endpoint, SKIP: True})
    assert (await admin.put(CONFIG, json={ENDPOINT: ""})).status_code == 400  # skip is on
    project = _uid("skip")
    assert (
        await admin.post("/api/v2.0/projects", json={"project_name": project})
    ).status_code == 201
    await push_image(admin, f"{project}/app", "v1", seed=b"skip")
    pulled = await admin.get(
        f"/v2/{project}/app/manifests/v1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert pulled.status_code == 200
    hooks = getattr(state.registry.hooks, "hooks", ())
    await next(h for h in hooks if isinstance(h, audit_hooks.RegistryHooks)).flush()
    await tcp_listener.wait_for(_is("create_project", project))
    await tcp_listener.wait_for(_is("create_artifact", f"{project}/app:v1"))
    await tcp_listener.wait_for(_is("pull_artifact", f"{project}/app:v1"))
    assert await _rows(state, project) == []
    assert await _rows(state, f"{project}/app:v1") == []
    async with state.db.read() as session:
        count = await session.scalar(
            select(Repository.pull_count).where(Repository.name == f"{project}/app")
        )
    assert count == 1  # pull counts are kept: they are not audit rows
    listed = await admin.get("/api/v2.0/audit-logs", params={"q": f"resource={project}"})
    assert listed.json() == []


async def test_bad_endpoints_are_refused(admin: httpx.AsyncClient) -> None:
    for bad in ("syslog", "syslog:0", "http://syslog:514", "sys log:514", 514):
        response = await admin.put(CONFIG, json={ENDPOINT: bad})
        assert response.status_code == 400, (bad, response.text)
    items = (await admin.get(CONFIG)).json()
    assert items[ENDPOINT] == {"value": "", "editable": True}
    assert items[SKIP] == {"value": False, "editable": True}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_down_endpoint_neither_fails_nor_slows_requests(
    admin: httpx.AsyncClient,
    state: AppState,
    tcp_listener: Listener,
    configure: Callable[..., object],
) -> None:
    async def create_projects(count: int) -> tuple[list[str], float]:
        names = [_uid("down") for _ in range(count)]
        slowest = 0.0
        for name in names:
            started = time.monotonic()
            response = await admin.post("/api/v2.0/projects", json={"project_name": name})
            slowest = max(slowest, time.monotonic() - started)
            assert response.status_code == 201
        return names, slowest

    _, baseline = await create_projects(3)
    # Nothing listens on one; the other is an address nothing answers (a connect that
    # can only time out, or fail at once where there is no route).
    for down in (f"127.0.0.1:{_closed_port()}", "udp://127.0.0.1:9", "tcp://192.0.2.1:514"):
        await configure(**{ENDPOINT: down})
        names, slowest = await create_projects(8)
        assert slowest < max(1.0, 5 * baseline), (down, slowest, baseline)
        for name in names:
            assert len(await _rows(state, name)) == 1  # stored all the same

    # Once the endpoint works again, new events arrive (the dead one's are let go).
    await configure(**{ENDPOINT: tcp_listener.endpoint})
    names, _ = await create_projects(1)
    await tcp_listener.wait_for(_is("create_project", names[0]), within=15)


async def test_a_full_queue_drops_new_events_with_a_warning(
    tcp_listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    forwarder = forwarding.SyslogForwarder(max_queued=5, hostname="node")
    dead = parse_endpoint(f"127.0.0.1:{_closed_port()}")
    assert dead is not None
    event = SyslogEvent(utcnow(), "create_label", "create", "label", "x", 0, "a", "-", "", True)
    forwarder.submit(dead, [event] * 12)
    assert forwarder.queued == 5 and forwarder.dropped == 7
    assert any("dropped 7 audit events" in r.getMessage() for r in caplog.records)
    await asyncio.sleep(0.2)  # it tried, failed, and keeps them for a retry
    assert forwarder.queued == 5 and forwarder.sent == 0
    # The configuration moves on to a working endpoint: the dead one's events go.
    working = parse_endpoint(tcp_listener.endpoint)
    assert working is not None
    forwarder.submit(
        working,
        [SyslogEvent(utcnow(), "create_label", "create", "label", "y", 0, "a", "-", "", True)],
    )
    await tcp_listener.wait_for(lambda m: m.sd[SD]["resource"] == "y" and m.hostname == "node")
    assert tcp_listener.about("x") == []
    started = time.monotonic()
    forwarder.submit(dead, [event])
    await forwarder.close(within=1.0)
    assert time.monotonic() - started < 2.0
    assert forwarder.queued == 0
    forwarder.submit(working, [event])  # after close: ignored
    assert forwarder.queued == 0

"""Many nodes: two ``dockyard serve`` processes and one ``dockyard worker`` on one
PostgreSQL database and one S3 bucket (SeaweedFS), with nothing else shared.

What one node does, the other sees: an image pushed through A pulls through B, a
chunked upload begun on A is finished on B, a token A issued is accepted by B, a
console session begun on A works on B and ends on both, a project deleted through
B is refused on A, garbage collection run by the worker
(the nodes run no jobs) while both nodes take pushes leaves every image whole, and
when A is killed in the middle of a push (SIGKILL) the client carries on at B.

The cluster starts once for the module; the test that kills A starts it again.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from tests.e2e.test_gc_online import WINDOW_HOURS, _derive, _gc, _pull_and_compare, _push
from tests.support.oci_layout import make_image_layout
from tests.support.postgres import postgres_admin_url, temporary_database
from tests.support.registry_auth import basic_header
from tests.support.seaweedfs import SeaweedFS, s3_settings, start_seaweedfs
from tests.support.server import DockyardServer, free_port
from tests.support.skopeo import Skopeo, SkopeoError

pytestmark = pytest.mark.e2e

API = "/api/v2.0"
OCTETS = "application/octet-stream"
USER_PASSWORD = "Many-Nodes-Passw0rd"
RECHECK_SECONDS = 0.5
"""``auth_recheck_seconds`` (the default): how stale another node's revocations may be."""
STARTUP = 180.0
"""Seconds a node may take to answer: three Python processes start on a shared machine."""


@dataclass
class Cluster:
    a: DockyardServer
    b: DockyardServer
    worker: subprocess.Popen[bytes]
    worker_log: Path
    database_url: str
    s3: SeaweedFS
    bucket: str

    @property
    def nodes(self) -> tuple[DockyardServer, DockyardServer]:
        return (self.a, self.b)

    def api(self, node: DockyardServer) -> httpx.Client:
        return httpx.Client(base_url=f"{node.url}{API}", auth=node.admin_auth, timeout=60)

    def root(self, node: DockyardServer) -> httpx.Client:
        """As ``api`` without the ``/api/v2.0`` base (the GC helpers name whole paths)."""
        return httpx.Client(base_url=node.url, auth=node.admin_auth, timeout=60)

    def logs(self) -> str:
        parts = [f"--- {n.url} ---\n{n.output_tail(4000)}" for n in self.nodes]
        parts.append(f"--- worker ---\n{self.worker_log.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)


def _env(s3: SeaweedFS, bucket: str) -> dict[str, str]:
    env = {
        f"DOCKYARD_{key.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
        for key, value in s3_settings(s3, bucket).items()
    }
    env["DOCKYARD_JOB_WORKERS"] = "0"  # the nodes serve; the worker runs every job
    env["DOCKYARD_JOB_POLL_SECONDS"] = "0.2"
    return env


def _start_worker(node: DockyardServer, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "dockyard", "worker", "--concurrency", "2"),
                *("--data-dir", str(node.data_dir)),
            ],
            env=node.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=node.data_dir.parent,
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    s3 = start_seaweedfs()
    try:
        bucket = s3.new_bucket()
        env = _env(s3, bucket)
        with (
            temporary_database(postgres_admin_url()) as url,
            DockyardServer(database_url=url, env=env, startup_timeout=STARTUP) as a,
            DockyardServer(database_url=url, env=env, startup_timeout=STARTUP) as b,
        ):
            log = tmp_path_factory.mktemp("worker") / "worker.log"
            worker = _start_worker(a, log)
            running = Cluster(a, b, worker, log, url, s3, bucket)
            try:
                _wait_for_worker(running)
                yield running
            finally:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait(timeout=10)
    finally:
        s3.stop()


def _wait_for_worker(cluster: Cluster) -> None:
    """Until the worker has registered its pool (the nodes have none: no job workers)."""
    with cluster.api(cluster.b) as api:
        deadline = time.monotonic() + 60
        while True:
            pools = api.get("/jobservice/pools")
            assert pools.status_code == 200, pools.text
            if pools.json():
                return
            assert cluster.worker.poll() is None, cluster.logs()
            assert time.monotonic() < deadline, f"the worker never registered\n{cluster.logs()}"
            time.sleep(0.2)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _path(location: str) -> str:
    """A ``Location`` without its node, so that another node can be asked for it."""
    parts = urlsplit(location)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def _patch(client: httpx.Client, location: str, chunk: bytes, start: int) -> httpx.Response:
    return client.patch(
        _path(location),
        content=chunk,
        headers={
            "Content-Type": OCTETS,
            "Content-Range": f"{start}-{start + len(chunk) - 1}",
            "Content-Length": str(len(chunk)),
        },
    )


def _name(stem: str) -> str:
    return f"library/{stem}-{uuid.uuid4().hex[:8]}"


# --- one node's work is the other's -----------------------------------------------------------


def test_image_pushed_through_a_pulls_through_b(
    cluster: Cluster, skopeo: Skopeo, tmp_path: Path
) -> None:
    image = make_image_layout(tmp_path / "image", layers=2, layer_size=256 * 1024, seed=1)
    ref = f"{_name('a-to-b')}:v1"
    digest = _push(skopeo, cluster.a, image.path, "latest", ref)
    assert digest == image.manifest_digest
    _pull_and_compare(skopeo, cluster.b, ref, tmp_path / "pulled", digest)


def test_chunked_upload_begun_on_a_is_finished_on_b(cluster: Cluster) -> None:
    data = os.urandom(6 * 1024 * 1024 + 321)
    split = 2 * 1024 * 1024 + 7
    name = _name("chunks")
    with cluster.a.client() as on_a, cluster.b.client() as on_b:
        started = on_a.post(f"/v2/{name}/blobs/uploads/")
        assert started.status_code == 202, started.text
        first = _patch(on_a, started.headers["Location"], data[:split], 0)
        assert first.status_code == 202, first.text
        location = first.headers["Location"]

        status = on_b.get(_path(location))
        assert status.status_code == 204, status.text
        assert status.headers["Range"] == f"0-{split - 1}"
        second = _patch(on_b, location, data[split:], split)
        assert second.status_code == 202, second.text
        assert second.headers["Location"].startswith(cluster.b.url)  # B answers for itself
        done = on_b.put(_path(second.headers["Location"]), params={"digest": _sha256(data)})
        assert done.status_code == 201, done.text

        fetched = on_a.get(f"/v2/{name}/blobs/{_sha256(data)}")
        assert fetched.status_code == 200
        assert fetched.content == data


def test_small_upload_grown_on_b_is_finished_whole_on_a(cluster: Cluster) -> None:
    """A finishes a small upload without a claim, from what it recorded itself; B's chunk
    since makes that record stale, and A's finish must see it (the upload's size is its
    compare-and-set) and make the blob of all the bytes."""
    data = os.urandom(300 * 1024 + 5)
    split = 100 * 1024 + 3
    name = _name("small-chunks")
    with cluster.a.client() as on_a, cluster.b.client() as on_b:
        started = on_a.post(f"/v2/{name}/blobs/uploads/")
        assert started.status_code == 202, started.text
        first = _patch(on_a, started.headers["Location"], data[:split], 0)
        assert first.status_code == 202, first.text
        second = _patch(on_b, _path(first.headers["Location"]), data[split:], split)
        assert second.status_code == 202, second.text
        done = on_a.put(_path(first.headers["Location"]), params={"digest": _sha256(data)})
        assert done.status_code == 201, done.text
        fetched = on_b.get(f"/v2/{name}/blobs/{_sha256(data)}")
        assert fetched.status_code == 200
        assert fetched.content == data


def test_unranged_chunks_alternating_nodes_append_in_order(cluster: Cluster) -> None:
    """A started the upload, so it takes it for empty without asking; B's chunk came
    first, so A's chunk (no range: "append at the end") must append after it, not be
    refused or overwrite it."""
    data = os.urandom(200 * 1024 + 11)
    split = 70 * 1024 + 1
    name = _name("unranged")
    with cluster.a.client() as on_a, cluster.b.client() as on_b:
        started = on_a.post(f"/v2/{name}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = _path(started.headers["Location"])
        headers = {"Content-Type": OCTETS}
        first = on_b.patch(location, content=data[:split], headers=headers)
        assert first.status_code == 202, first.text
        second = on_a.patch(location, content=data[split:], headers=headers)
        assert second.status_code == 202, second.text
        assert second.headers["Range"] == f"0-{len(data) - 1}"
        done = on_a.put(_path(second.headers["Location"]), params={"digest": _sha256(data)})
        assert done.status_code == 201, done.text
        assert on_b.get(f"/v2/{name}/blobs/{_sha256(data)}").content == data


def test_token_from_a_is_accepted_by_b(cluster: Cluster, skopeo: Skopeo, tmp_path: Path) -> None:
    image = make_image_layout(tmp_path / "image", layers=1, layer_size=64 * 1024, seed=2)
    name = _name("token")
    _push(skopeo, cluster.b, image.path, "latest", f"{name}:v1")
    with httpx.Client(timeout=30) as http:
        answer = http.get(
            f"{cluster.a.url}/service/token",
            params={"service": "dockyard", "scope": f"repository:{name}:pull"},
            headers={"Authorization": basic_header(*cluster.a.admin_auth)},
        )
        assert answer.status_code == 200, answer.text
        bearer = {"Authorization": f"Bearer {answer.json()['token']}"}
        on_b = http.get(f"{cluster.b.url}/v2/{name}/manifests/v1", headers=bearer)
        assert on_b.status_code == 200, on_b.text
        assert on_b.headers["Docker-Content-Digest"] == image.manifest_digest
        # ... and only for what it grants: no push, no other repository
        refused = http.post(f"{cluster.b.url}/v2/{name}/blobs/uploads/", headers=bearer)
        assert refused.status_code == 401
        other = http.get(f"{cluster.b.url}/v2/{name}-x/tags/list", headers=bearer)
        assert other.status_code == 401


def test_console_session_from_a_works_on_b_and_ends_everywhere(cluster: Cluster) -> None:
    a, b = cluster.nodes
    csrf = "X-Harbor-CSRF-Token"
    with httpx.Client(timeout=30) as browser:  # one cookie jar: the nodes share 127.0.0.1
        login = browser.post(
            f"{a.url}/c/login", data={"principal": "admin", "password": a.admin_password}
        )
        assert login.status_code == 200, login.text
        token = login.headers[csrf]
        current = browser.get(f"{b.url}{API}/users/current")
        assert current.status_code == 200, current.text
        assert current.json()["username"] == "admin"
        group = {"group_type": 2, "group_name": f"g{uuid.uuid4().hex[:8]}"}
        made = browser.post(f"{b.url}{API}/usergroups", json=group, headers={csrf: token})
        assert made.status_code == 201, made.text

        ended = browser.get(f"{b.url}/c/log_out")
        assert ended.status_code == 200, ended.text
        browser.cookies.clear()
        browser.cookies.set("sid", login.cookies["sid"])  # the old cookie, replayed on A
        assert browser.get(f"{a.url}{API}/users/current").status_code == 401


def test_project_deleted_on_b_is_refused_on_a(cluster: Cluster) -> None:
    project = f"gone-{uuid.uuid4().hex[:8]}"
    user = f"member{uuid.uuid4().hex[:8]}"
    repository = f"{project}/app"
    with cluster.api(cluster.a) as on_a, cluster.api(cluster.b) as on_b:
        made = on_a.post("/projects", json={"project_name": project, "metadata": {}})
        assert made.status_code == 201, made.text
        person = {"username": user, "email": f"{user}@example.com", "realname": user}
        added = on_a.post("/users", json={**person, "password": USER_PASSWORD})
        assert added.status_code == 201, added.text
        joined = on_a.post(
            f"/projects/{project}/members",
            headers={"X-Is-Resource-Name": "true"},
            json={"role_id": 2, "member_user": {"username": user}},
        )
        assert joined.status_code == 201, joined.text

        # The member's token, issued by A and used on A (which now remembers that it holds).
        with httpx.Client(base_url=cluster.a.url, timeout=30) as http:
            answer = http.get(
                "/service/token",
                params={"service": "dockyard", "scope": f"repository:{repository}:pull,push"},
                headers={"Authorization": basic_header(user, USER_PASSWORD)},
            )
            assert answer.status_code == 200, answer.text
            bearer = {"Authorization": f"Bearer {answer.json()['token']}"}
            assert http.get(f"/v2/{repository}/tags/list", headers=bearer).status_code == 404

            deleted = on_b.delete(f"/projects/{project}", headers={"X-Is-Resource-Name": "true"})
            assert deleted.status_code == 200, deleted.text

            # At once on A: the project is gone for everyone (no node caches projects) ...
            with cluster.a.client() as admin_on_a:
                pushed = admin_on_a.post(f"/v2/{repository}/blobs/uploads/")
            assert pushed.status_code == 404, pushed.text
            assert pushed.json()["errors"][0]["code"] == "NAME_UNKNOWN"
            assert on_a.get(f"/projects/{project}").status_code == 404
            # ... and the member's token is refused within auth_recheck_seconds, as the
            # README promises (B's deletion moved the revocation counter A reads).
            refused = _refused_within(http, f"/v2/{repository}/tags/list", bearer, RECHECK_SECONDS)
            assert refused.status_code == 401, refused.text
            # A project created again under the name is not the old member's either.
            again = on_b.post("/projects", json={"project_name": project, "metadata": {}})
            assert again.status_code == 201, again.text
            assert http.get(f"/v2/{repository}/tags/list", headers=bearer).status_code == 401


def _refused_within(
    http: httpx.Client, path: str, headers: dict[str, str], seconds: float
) -> httpx.Response:
    """The first answer other than the cached "allowed" (404), asking until ``seconds``
    have passed since the change, then once more (bounded; the promise is the bound)."""
    deadline = time.monotonic() + seconds
    while True:
        answer = http.get(path, headers=headers)
        if answer.status_code != 404 or time.monotonic() > deadline:
            return answer
        time.sleep(0.02)


# --- garbage collection by the worker while both nodes take pushes ------------------------------


def test_gc_by_the_worker_while_both_nodes_take_pushes(
    cluster: Cluster, skopeo: Skopeo, tmp_path: Path
) -> None:
    a, b = cluster.nodes
    run = uuid.uuid4().hex[:6]
    olds = [
        make_image_layout(tmp_path / f"old{i}", layers=3, layer_size=48 * 1024, seed=200 + i)
        for i in range(4)
    ]
    with cluster.root(a) as api_a, cluster.root(b) as api_b:
        for i, old in enumerate(olds):
            _push(skopeo, cluster.nodes[i % 2], old.path, "latest", f"library/gc{run}-{i}:v1")
        for i in range(4):
            api = (api_b, api_a)[i % 2]  # deleted through the node that did not push it
            gone = api.delete(f"{API}/projects/library/repositories/gc{run}-{i}/artifacts/v1")
            assert gone.status_code == 200, gone.text
        # The deleted images' blobs must be older than the window to be collected.
        time.sleep(WINDOW_HOURS * 3600 + 0.5)

        # (layout, tag, reference, the node it is pushed to): images sharing the deleted
        # images' layers, and two deleted images again, spread over both nodes.
        pushes: list[tuple[Path, str, str, DockyardServer]] = []
        for i, old in enumerate(olds):
            _derive(old, tmp_path / f"new{i}", i)
            ref = f"library/gc{run}-{i}:v2" if i % 2 == 0 else f"library/gc{run}-new{i}:v1"
            pushes.append((tmp_path / f"new{i}", "v2", ref, cluster.nodes[i % 2]))
        for i in (0, 3):
            pushes.append(
                (olds[i].path, "latest", f"library/gc{run}-again{i}:v1", cluster.nodes[i % 2])
            )

        refusals: list[str] = []
        runs: list[dict[str, Any]] = []
        with ThreadPoolExecutor(4) as pool:
            futures = [
                pool.submit(_push_retrying, skopeo, node, layout, tag, ref, refusals)
                for layout, tag, ref, node in pushes
            ]
            turn = 0
            while not all(f.done() for f in futures):
                gc = _gc((api_a, api_b)[turn % 2], time_window=WINDOW_HOURS, delete_untagged=True)
                turn += 1
                if gc is not None:
                    runs.append(gc)
            digests = [f.result() for f in futures]
        assert runs, "GC ran while the pushes went on"
        final = _gc(api_b, time_window=0, delete_untagged=True)
        assert final is not None

    # Every image pulls back whole, through the node that did not take its push.
    for n, ((_, _, ref, node), digest) in enumerate(zip(pushes, digests, strict=True)):
        other = b if node is a else a
        _pull_and_compare(skopeo, other, ref, tmp_path / f"pulled{n}", digest)
    print(f"{len(runs) + 1} GC runs by the worker; refused pushes retried: {len(refusals)}")


def _push_retrying(
    skopeo: Skopeo, node: DockyardServer, layout: Path, tag: str, ref: str, refusals: list[str]
) -> str:
    """A push that GC refused (it claimed a blob the push named first) is a correct
    outcome; pushing again uploads what went. Three tries at most."""
    for attempt in range(3):
        try:
            return _push(skopeo, node, layout, tag, ref)
        except SkopeoError as exc:
            refusals.append(f"{ref} attempt {attempt}: {str(exc)[-300:]}")
    raise AssertionError(f"{ref} could not be pushed: {refusals}")


# --- a node dies in the middle of a push -------------------------------------------------------


def test_node_killed_mid_push_and_the_retry_succeeds_on_the_other(
    cluster: Cluster, skopeo: Skopeo, tmp_path: Path
) -> None:
    a, b = cluster.nodes
    data = os.urandom(12 * 1024 * 1024 + 99)
    split = 3 * 1024 * 1024
    name = _name("killed")
    killed = threading.Event()
    a_pid = a.pid
    assert a_pid is not None  # killpg(0) would be this test's own process group

    def body() -> Iterator[bytes]:
        """The second chunk: A is killed once a mebibyte of it is on the wire."""
        rest = data[split:]
        yield rest[: 1024 * 1024]
        os.killpg(a_pid, signal.SIGKILL)
        killed.set()
        for offset in range(1024 * 1024, len(rest), 256 * 1024):
            yield rest[offset : offset + 256 * 1024]

    try:
        with a.client() as on_a, b.client() as on_b:
            started = on_a.post(f"/v2/{name}/blobs/uploads/")
            assert started.status_code == 202, started.text
            first = _patch(on_a, started.headers["Location"], data[:split], 0)
            assert first.status_code == 202, first.text
            location = first.headers["Location"]
            with pytest.raises(httpx.TransportError):
                on_a.patch(_path(location), content=body(), headers={"Content-Type": OCTETS})
            assert killed.is_set()

            # The client retries on B: the upload is where A last committed it, the
            # chunk A died in counts for nothing, and B takes over A's claim at once
            # (its holder is a dead process on this host).
            status = on_b.get(_path(location))
            assert status.status_code == 204, status.text
            assert status.headers["Range"] == f"0-{split - 1}"
            rest = _patch(on_b, location, data[split:], split)
            assert rest.status_code == 202, rest.text
            done = on_b.put(_path(rest.headers["Location"]), params={"digest": _sha256(data)})
            assert done.status_code == 201, done.text
            assert on_b.get(f"/v2/{name}/blobs/{_sha256(data)}").content == data

        # A whole image: skopeo's push to the dead node fails; pushed again to B, it
        # pulls back whole from B.
        image = make_image_layout(tmp_path / "image", layers=2, layer_size=512 * 1024, seed=3)
        with pytest.raises(SkopeoError):
            _push(skopeo, a, image.path, "latest", f"{name}:v1")
        digest = _push(skopeo, b, image.path, "latest", f"{name}:v1")
        _pull_and_compare(skopeo, b, f"{name}:v1", tmp_path / "pulled", digest)
    finally:
        a.stop()  # reaps the killed process group
        a.start()
    # A, back, serves what B took while it was down.
    _pull_and_compare(skopeo, a, f"{name}:v1", tmp_path / "pulled-from-a", digest)


def test_a_node_on_a_missing_bucket_stops_with_one_line(cluster: Cluster, tmp_path: Path) -> None:
    """The start-time bucket check runs in a child process (the S3 client must not be
    used before the ASGI server forks its workers); its answer still stops ``serve``."""
    env = {**cluster.a.env, "DOCKYARD_STORAGE_S3_BUCKET": f"missing-{uuid.uuid4().hex[:8]}"}
    started = subprocess.run(
        [
            *(sys.executable, "-m", "dockyard", "serve", "--host", "127.0.0.1"),
            *("--port", str(free_port()), "--data-dir", str(tmp_path)),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode == 1, started.stderr
    assert "Traceback" not in started.stderr
    assert env["DOCKYARD_STORAGE_S3_BUCKET"] in started.stderr

"""No single request or job holds a real server's event loop (issue 13 items 1, 2 and 5).

Each test sets up the worst case a role can (the longest patterns, the most rules, a chart
archive of 400,000 members), then runs it while ``PingWatch`` pings ``/api/v2.0/ping``
every 50 ms from another client: no ping may wait more than 100 ms. Before the fix the
listing held the loop 13.8 s, the retention dry run 16.6 s and the chart README 7.6 s.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.support.server import DockyardServer
from tests.support.stall import assert_no_stall_while

API = "/api/v2.0"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
WORST_TAG_PATTERN = "*a" * 128
"""256 characters, the longest allowed: ≈ 12 ms a match for the former automaton."""


@pytest.fixture(scope="module")
def admin(backend_server: DockyardServer) -> Iterator[httpx.Client]:
    """Basic auth, which both the Harbor API and /v2/ take."""
    with httpx.Client(
        base_url=backend_server.url, auth=backend_server.admin_auth, timeout=60
    ) as client:
        yield client


@pytest.fixture(scope="module")
def anonymous(backend_server: DockyardServer) -> Iterator[httpx.Client]:
    with backend_server.client(anonymous=True) as client:
        yield client


def _project(admin: httpx.Client) -> tuple[str, int]:
    name = f"stall{uuid.uuid4().hex[:10]}"
    response = admin.post(
        f"{API}/projects", json={"project_name": name, "metadata": {"public": "true"}}
    )
    assert response.status_code == 201, response.text
    return name, int(response.headers["location"].rsplit("/", 1)[1])


def _blob(admin: httpx.Client, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    response = admin.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
    assert response.status_code == 201, response.text
    return digest


def _manifest(admin: httpx.Client, repo: str, config: bytes, layer: bytes, kind: str) -> bytes:
    config_type, layer_type = (HELM_CONFIG, HELM_LAYER) if kind == "chart" else (OCI_CONFIG, "")
    layer_type = layer_type or "application/vnd.oci.image.layer.v1.tar"
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": config_type,
                "digest": _blob(admin, repo, config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": layer_type, "digest": _blob(admin, repo, layer), "size": len(layer)}
            ],
        }
    ).encode()


def _tag(admin: httpx.Client, repo: str, tag: str, manifest: bytes) -> None:
    response = admin.put(
        f"/v2/{repo}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 201, response.text


def _image(admin: httpx.Client, repo: str, seed: str) -> bytes:
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    return _manifest(admin, repo, config, f"layer {seed}".encode(), "image")


def _tags(count: int) -> list[str]:
    """128-character tags none of which ``WORST_TAG_PATTERN`` selects (125 a's, not 128)."""
    return [f"{i:03d}" + "a" * 125 for i in range(count)]


def _rule(tag: str, repo: str = "**") -> dict[str, Any]:
    return {
        "action": "immutable",
        "template": "immutable_template",
        "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": tag}],
        "scope_selectors": {
            "repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": repo}]
        },
    }


def test_listing_immutable_status_under_the_worst_rules_does_not_stall(
    backend_server: DockyardServer, admin: httpx.Client, anonymous: httpx.Client
) -> None:
    """Item 1: 15 rules of 256-character patterns, 150 tags of 128 characters, an
    anonymous listing with immutable status (2,250 checks: the worker-thread path)."""
    project, _ = _project(admin)
    repo = f"{project}/app"
    manifest = _image(admin, repo, "one")
    for tag in [*_tags(150), "a" * 128]:
        _tag(admin, repo, tag, manifest)
    for i in range(15):
        # distinct rules: the same long pattern behind a different repository pattern
        body = _rule(WORST_TAG_PATTERN, "**" if i == 0 else f"{{**,x{i}}}")
        response = admin.post(f"{API}/projects/{project}/immutabletagrules", json=body)
        assert response.status_code == 201, response.text
    url = f"{API}/projects/{project}/repositories/app/artifacts"
    params = {"with_tag": "true", "with_immutable_status": "true", "page_size": "100"}
    answers: list[httpx.Response] = []

    watch = assert_no_stall_while(
        backend_server.url, lambda _attempt: answers.append(anonymous.get(url, params=params))
    )

    assert answers[-1].status_code == 200, answers[-1].text
    [artifact] = answers[-1].json()
    immutable = {t["name"] for t in artifact["tags"] if t["immutable"]}
    assert immutable == {"a" * 128}, "the rules were evaluated, and only that tag matches"
    assert len(artifact["tags"]) == 151
    print(f"immutable listing: {watch.summary()}")


def test_a_retention_dry_run_of_the_worst_rules_does_not_stall(
    backend_server: DockyardServer, admin: httpx.Client
) -> None:
    """Item 2: a developer's dry run of 15 rules x 10 tag selectors of long patterns over
    30 tags runs in the server's job worker, in the same process as the API."""
    project, project_id = _project(admin)
    repo = f"{project}/app"
    manifest = _image(admin, repo, "two")
    for tag in _tags(30):
        _tag(admin, repo, tag, manifest)
    rules = [
        {
            "action": "retain",
            "template": "latestPushedK",
            "params": {"latestPushedK": rule},
            "tag_selectors": [
                {
                    "kind": "doublestar",
                    "decoration": "matches",
                    "pattern": WORST_TAG_PATTERN[: 256 - 4] + f"{rule:02d}{s:02d}",
                }
                for s in range(10)
            ],
            "scope_selectors": {
                "repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]
            },
        }
        for rule in range(15)
    ]
    body = {
        "algorithm": "or",
        "rules": rules,
        "trigger": {"kind": "Schedule", "settings": {"cron": ""}},
        "scope": {"level": "project", "ref": project_id},
    }
    created = admin.post(f"{API}/retentions", json=body)
    assert created.status_code == 201, created.text
    policy = created.headers["location"].rsplit("/", 1)[1]
    statuses: list[str] = []

    def dry_run(_attempt: int) -> None:
        started = admin.post(f"{API}/retentions/{policy}/executions", json={"dry_run": True})
        assert started.status_code == 201, started.text
        execution = started.headers["location"].rsplit("/", 1)[1]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = admin.get(f"{API}/retentions/{policy}/executions")
            status = next(e["status"] for e in found.json() if str(e["id"]) == execution)
            if status in ("Success", "Error", "Stopped"):
                statuses.append(status)
                return
            time.sleep(0.05)
        raise AssertionError(f"the dry run {execution} did not end within 60 s")

    watch = assert_no_stall_while(backend_server.url, dry_run)
    assert statuses[-1] == "Success"
    print(f"retention dry run: {watch.summary()}")


def _hostile_chart(seed: str) -> bytes:
    """A chart archive of 400,000 empty members and no README: ≈ 1.4 MB gzip'd, under the
    4 MiB read cap, 200 MB of tar headers once unpacked."""
    header = tarfile.TarInfo(f"c/templates/{seed}.yaml").tobuf(format=tarfile.USTAR_FORMAT)
    first = tarfile.TarInfo("c/Chart.yaml")
    first.size = 0
    return gzip.compress(first.tobuf(format=tarfile.USTAR_FORMAT) + header * 400_000, 1)


def test_a_hostile_chart_readme_does_not_stall(
    backend_server: DockyardServer, admin: httpx.Client, anonymous: httpx.Client
) -> None:
    """Item 5: the README of a chart of 400,000 members, anonymously (7.6 s on the loop
    before). Each attempt reads another chart: the first answer is kept per archive."""
    project, _ = _project(admin)
    repo = f"{project}/chart"
    for attempt in range(2):
        config = json.dumps({"name": "c", "version": f"0.{attempt}.0"}).encode()
        chart = _manifest(admin, repo, config, _hostile_chart(str(attempt)), "chart")
        _tag(admin, repo, f"0.{attempt}.0", chart)
    url = f"{API}/projects/{project}/repositories/chart/artifacts/0.{{}}.0/additions/readme.md"
    answers: list[httpx.Response] = []

    watch = assert_no_stall_while(
        backend_server.url, lambda attempt: answers.append(anonymous.get(url.format(attempt)))
    )
    print(f"hostile chart README: {watch.summary()}")

    assert answers[-1].status_code == 404, answers[-1].text
    assert "members" in answers[-1].json()["errors"][0]["message"]
    assert answers[-1].headers["x-content-type-options"] == "nosniff"

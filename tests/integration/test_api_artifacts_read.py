"""Browsing repositories and artifacts through Harbor's API: the facts recorded at push,
every ``with_*`` flag, ``q``/``sort``/paging, additions, and who may see what."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from tests.integration.conftest import make_client
from tests.integration.registry_helpers import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    digest_of,
    image_manifest,
    push_blob,
)

from dockyard.http.state import AppState
from dockyard.iam.models import User
from dockyard.iam.passwords import hash_password
from dockyard.labels.models import Label, LabelReference
from dockyard.projects.models import Project
from dockyard.registry.models import Artifact

API = "/api/v2.0"
PASSWORD = "Passw0rdPassw0rd"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
SKIP_CONTRACT = {"X-Dockyard-Contract": "skip"}
"""Additions: swagger calls the body a string; Harbor (and Dockyard) send the addition
itself (JSON for build history and dependencies, text for values.yaml and readme.md)."""


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def _put_manifest(
    client: httpx.AsyncClient, repo: str, reference: str, body: bytes, media_type: str
) -> str:
    response = await client.put(
        f"/v2/{repo}/manifests/{reference}", content=body, headers={"Content-Type": media_type}
    )
    assert response.status_code == 201, response.text
    return digest_of(body)


async def _image(
    client: httpx.AsyncClient, repo: str, tag: str | None, seed: str, arch: str = "amd64"
) -> tuple[str, int]:
    """Push an image whose config has Harbor's extra attrs and a history; (digest, size)."""
    config = json.dumps(
        {
            "created": "2026-01-02T03:04:05Z",
            "author": "dockyard tests",
            "architecture": arch,
            "os": "linux",
            "config": {"Env": [f"SEED={seed}"]},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [
                {"created": "2026-01-02T03:04:05Z", "created_by": f"RUN echo {seed}"},
                {"created_by": "CMD sh", "empty_layer": True},
            ],
        }
    ).encode()
    config_digest = await push_blob(client, repo, config)
    layer = f"layer {seed} {repo}".encode()
    layer_digest = await push_blob(client, repo, layer)
    body = image_manifest((config_digest, len(config)), [(layer_digest, len(layer))])
    digest = await _put_manifest(client, repo, tag or digest_of(body), body, OCI_MANIFEST)
    return digest, len(body) + len(config) + len(layer)


def _chart_archive() -> bytes:
    files = {
        "mychart/Chart.yaml": b"apiVersion: v2\nname: mychart\nversion: 0.1.0\n",
        "mychart/values.yaml": b"replicaCount: 3\n",
        "mychart/README.md": b"# My chart\n",
        "mychart/charts/sub/values.yaml": b"ignored: true\n",
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


async def _chart(client: httpx.AsyncClient, repo: str, tag: str) -> str:
    config = json.dumps(
        {
            "apiVersion": "v2",
            "name": "mychart",
            "version": "0.1.0",
            "dependencies": [{"name": "redis", "version": "1.2.3", "repository": "oci://x"}],
        }
    ).encode()
    archive = _chart_archive()
    config_digest = await push_blob(client, repo, config)
    layer_digest = await push_blob(client, repo, archive)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": HELM_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": HELM_LAYER, "digest": layer_digest, "size": len(archive)}],
        }
    ).encode()
    return await _put_manifest(client, repo, tag, body, OCI_MANIFEST)


@dataclass
class Pushed:
    project: str
    repo: str
    inner: str
    v1: str
    v2: str
    index: str
    chart: str
    referrer: str
    signature: str
    v1_size: int


async def _push_everything(admin: httpx.AsyncClient, project: str) -> Pushed:
    inner = f"team/{_name('app')}"
    repo = f"{project}/{inner}"
    v1, v1_size = await _image(admin, repo, "v1", "one")
    v2, _ = await _image(admin, repo, "v2", "two")
    arm, _ = await _image(admin, repo, None, "arm", arch="arm64")
    arm_body = (await admin.get(f"/v2/{repo}/manifests/{arm}")).content
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": arm,
                    "size": len(arm_body),
                    "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
                }
            ],
        }
    ).encode()
    index_digest = await _put_manifest(admin, repo, "multi", index, OCI_INDEX)
    chart = await _chart(admin, repo, "chart-0.1.0")
    v1_body = (await admin.get(f"/v2/{repo}/manifests/{v1}")).content
    empty = await push_blob(admin, repo, b"{}")
    referrer = image_manifest(
        (empty, 2),
        [],
        subject=(v1, len(v1_body)),
        artifact_type="application/spdx+json",
        config_type="application/vnd.oci.empty.v1+json",
    )
    referrer_digest = await _put_manifest(admin, repo, digest_of(referrer), referrer, OCI_MANIFEST)
    sig_payload = await push_blob(admin, repo, b'{"critical":{}}' + repo.encode())
    sig_config = await push_blob(admin, repo, b'{"os":"","architecture":""}')
    signature = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sig_config, "size": 27},
            "layers": [
                {
                    "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "digest": sig_payload,
                    "size": len(b'{"critical":{}}' + repo.encode()),
                }
            ],
        }
    ).encode()
    sig_tag = v1.replace(":", "-") + ".sig"
    signature_digest = await _put_manifest(admin, repo, sig_tag, signature, OCI_MANIFEST)
    return Pushed(
        project,
        repo,
        inner,
        v1,
        v2,
        index_digest,
        chart,
        referrer_digest,
        signature_digest,
        v1_size,
    )


async def _project(admin: httpx.AsyncClient, public: bool) -> str:
    name = _name("art")
    response = await admin.post(
        f"{API}/projects",
        json={"project_name": name, "metadata": {"public": "true" if public else "false"}},
    )
    assert response.status_code == 201, response.text
    return name


@pytest.fixture
async def pushed(admin: httpx.AsyncClient) -> Pushed:
    return await _push_everything(admin, await _project(admin, public=False))


def _artifacts_url(p: Pushed) -> str:
    return f"{API}/projects/{p.project}/repositories/{quote(quote(p.inner, safe=''), safe='')}"


async def test_repositories_listing_and_get(admin: httpx.AsyncClient, pushed: Pushed) -> None:
    listed = await admin.get(f"{API}/projects/{pushed.project}/repositories")
    assert listed.status_code == 200
    assert listed.headers["X-Total-Count"] == "1"
    [repository] = listed.json()
    assert repository["name"] == pushed.repo
    # accessories (referrer, signature) count as artifacts of the repository, as in Harbor;
    # the index's child does not (it is shown under its index)
    assert repository["artifact_count"] == 6
    fuzzy = await admin.get(
        f"{API}/projects/{pushed.project}/repositories",
        params={"q": "name=~" + pushed.inner[-6:].upper(), "sort": "-name"},
    )
    assert [r["name"] for r in fuzzy.json()] == [pushed.repo]
    none = await admin.get(
        f"{API}/projects/{pushed.project}/repositories", params={"q": "name=nothing"}
    )
    assert none.json() == [] and none.headers["X-Total-Count"] == "0"

    one = await admin.get(_artifacts_url(pushed))
    assert one.status_code == 200
    assert one.json()["id"] == repository["id"]
    missing = await admin.get(f"{API}/projects/{pushed.project}/repositories/nothing")
    assert missing.status_code == 404

    everywhere = await admin.get(
        f"{API}/repositories", params={"q": f"name={pushed.repo}", "page_size": 5}
    )
    assert [r["name"] for r in everywhere.json()] == [pushed.repo]


async def test_artifact_facts_and_flags(admin: httpx.AsyncClient, pushed: Pushed) -> None:
    url = _artifacts_url(pushed) + "/artifacts"
    response = await admin.get(
        url,
        params={
            "with_tag": "true",
            "with_label": "true",
            "with_accessory": "true",
            "with_immutable_status": "true",
            "with_scan_overview": "true",
            "with_sbom_overview": "true",
            "page_size": 100,
        },
    )
    assert response.status_code == 200, response.text
    by_digest = {a["digest"]: a for a in response.json()}
    # the referrer and the cosign signature are listed with their subject, not on their own
    assert pushed.referrer not in by_digest and pushed.signature not in by_digest
    assert response.headers["X-Total-Count"] == str(len(by_digest)) == "4"

    v1 = by_digest[pushed.v1]
    assert v1["type"] == "IMAGE"
    assert v1["media_type"] == OCI_CONFIG
    assert v1["manifest_media_type"] == OCI_MANIFEST
    assert v1["size"] == pushed.v1_size
    assert v1["extra_attrs"] == {
        "created": "2026-01-02T03:04:05Z",
        "author": "dockyard tests",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["SEED=one"]},
    }
    assert [t["name"] for t in v1["tags"]] == ["v1"]
    assert v1["tags"][0]["immutable"] is False
    assert v1["labels"] == []
    assert set(v1["addition_links"]) == {"build_history"}
    assert v1["addition_links"]["build_history"]["href"].endswith(
        f"/repositories/{quote(quote(pushed.inner, safe=''), safe='')}"
        f"/artifacts/{pushed.v1}/additions/build_history"
    )
    accessories = {a["digest"]: a for a in v1["accessories"]}
    assert accessories[pushed.referrer]["type"] == "subject.accessory"
    assert accessories[pushed.signature]["type"] == "signature.cosign"
    assert accessories[pushed.signature]["subject_artifact_digest"] == pushed.v1
    assert accessories[pushed.signature]["subject_artifact_repo"] == pushed.repo

    index = by_digest[pushed.index]
    assert index["type"] == "IMAGE"
    assert index["media_type"] == OCI_INDEX
    [child] = index["references"]
    assert child["platform"] == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert child["child_digest"] not in by_digest  # listed under its index only, as in Harbor
    assert "addition_links" not in index

    chart = by_digest[pushed.chart]
    assert chart["type"] == "CHART"
    assert chart["media_type"] == HELM_CONFIG
    assert chart["extra_attrs"]["name"] == "mychart"
    assert set(chart["addition_links"]) == {"values.yaml", "readme.md", "dependencies"}

    bare = await admin.get(url, params={"with_tag": "false"})
    assert all("tags" not in a and "labels" not in a for a in bare.json())


async def test_artifact_q_sort_and_paging(admin: httpx.AsyncClient, pushed: Pushed) -> None:
    url = _artifacts_url(pushed) + "/artifacts"

    async def digests(**params: Any) -> list[str]:
        response = await admin.get(url, params=params)
        assert response.status_code == 200, response.text
        return [a["digest"] for a in response.json()]

    assert await digests(q="tags=v1") == [pushed.v1]
    assert set(await digests(q="tags=~v")) == {pushed.v1, pushed.v2}
    assert await digests(q="tags=nil") == []  # the untagged child is not top-level
    assert pushed.index in await digests(q="tags=*")
    assert set(await digests(q="tags={v1 v2}")) == {pushed.v1, pushed.v2}
    assert await digests(q="type=CHART") == [pushed.chart]
    assert await digests(q=f"media_type={OCI_INDEX}") == [pushed.index]
    assert await digests(q=f"digest={pushed.v2}") == [pushed.v2]
    assert await digests(q="labels=(1 2)") == []
    ascending = await digests(sort="push_time")
    assert ascending == list(reversed(await digests(sort="-push_time")))
    assert ascending[0] == pushed.v1

    first = await admin.get(url, params={"page": 1, "page_size": 2, "sort": "push_time"})
    second = await admin.get(url, params={"page": 2, "page_size": 2, "sort": "push_time"})
    assert first.headers["X-Total-Count"] == "4"
    assert 'rel="next"' in first.headers["Link"]
    assert [a["digest"] for a in first.json() + second.json()] == ascending[:4]

    for params in (
        {"q": "tags=[a~b]"},
        {"q": "labels=x"},
        {"q": "nosuchkey=1"},
        {"q": "digest=\x00"},
        {"sort": "nosuchkey"},
        {"page": "0"},
        {"page_size": "101"},
        {"page": "-1"},
        {"with_tag": "maybe"},
        {"q": "id=~1"},
        {"q": "id=99999999999999999999"},
    ):
        bad = await admin.get(url, params=params)
        assert bad.status_code == 400, (params, bad.text)


async def test_get_artifact_tags_accessories(admin: httpx.AsyncClient, pushed: Pushed) -> None:
    base = _artifacts_url(pushed) + "/artifacts"
    by_tag = await admin.get(f"{base}/v1", params={"with_accessory": "true", "with_label": "1"})
    assert by_tag.status_code == 200
    assert by_tag.json()["digest"] == pushed.v1
    assert len(by_tag.json()["accessories"]) == 2
    by_digest = await admin.get(
        f"{base}/{pushed.v1}", params={"with_signature": "true", "with_immutable_status": "true"}
    )
    assert by_digest.json()["id"] == by_tag.json()["id"]

    tags = await admin.get(f"{base}/v1/tags", params={"with_immutable_status": "true"})
    assert [t["name"] for t in tags.json()] == ["v1"]
    assert tags.json()[0]["immutable"] is False
    assert tags.headers["X-Total-Count"] == "1"
    filtered = await admin.get(f"{base}/v1/tags", params={"q": "name=~zz", "sort": "name"})
    assert filtered.json() == []

    accessories = await admin.get(f"{base}/{pushed.v1}/accessories", params={"sort": "type"})
    assert [a["type"] for a in accessories.json()] == ["signature.cosign", "subject.accessory"]
    only = await admin.get(f"{base}/v1/accessories", params={"q": "type=signature.cosign"})
    assert [a["digest"] for a in only.json()] == [pushed.signature]

    for reference in ("nope", "sha256:" + "0" * 64):
        missing = await admin.get(f"{base}/{reference}")
        assert missing.status_code == 404
    for reference in ("sha256:xyz", "bad%20tag"):
        bad = await admin.get(f"{base}/{reference}")
        assert bad.status_code == 400, bad.text
        bad_tags = await admin.get(f"{base}/{reference}/tags")
        assert bad_tags.status_code == 400


async def test_additions(admin: httpx.AsyncClient, pushed: Pushed) -> None:
    base = _artifacts_url(pushed) + "/artifacts"
    history = await admin.get(f"{base}/v1/additions/build_history", headers=SKIP_CONTRACT)
    assert history.status_code == 200
    assert history.headers["content-type"].startswith("application/json")
    assert [h.get("created_by") for h in history.json()] == ["RUN echo one", "CMD sh"]

    values = await admin.get(f"{base}/chart-0.1.0/additions/values.yaml", headers=SKIP_CONTRACT)
    assert values.status_code == 200 and values.text == "replicaCount: 3\n"
    readme = await admin.get(f"{base}/chart-0.1.0/additions/readme.md", headers=SKIP_CONTRACT)
    assert readme.text == "# My chart\n"
    # the uploader's document runs nothing on the registry's origin, and is not sniffed
    for document in (readme, values):
        assert document.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in document.headers["content-security-policy"]
        assert "default-src 'none'" in document.headers["content-security-policy"]
    deps = await admin.get(f"{base}/chart-0.1.0/additions/dependencies", headers=SKIP_CONTRACT)
    assert deps.json() == [{"name": "redis", "version": "1.2.3", "repository": "oci://x"}]

    # an addition that does not apply to the artifact's type, or that does not exist
    assert (await admin.get(f"{base}/v1/additions/values.yaml")).status_code == 404
    assert (await admin.get(f"{base}/chart-0.1.0/additions/build_history")).status_code == 404
    assert (await admin.get(f"{base}/multi/additions/build_history")).status_code == 404
    # an unscanned artifact's vulnerabilities: Harbor's empty report (test_api_small_operations)
    vulnerabilities = await admin.get(f"{base}/v1/additions/vulnerabilities", headers=SKIP_CONTRACT)
    assert vulnerabilities.status_code == 200 and vulnerabilities.json() == {}
    unknown = await admin.get(f"{base}/v1/additions/nothing", headers=SKIP_CONTRACT)
    assert unknown.status_code == 404


async def _user(state: AppState) -> str:
    username = _name("u")
    async with state.db.write() as session:
        session.add(User(username=username, password=hash_password(PASSWORD)))
    return username


async def test_visibility(
    app: Starlette, admin: httpx.AsyncClient, anon: httpx.AsyncClient, state: AppState
) -> None:
    private = await _push_everything(admin, await _project(admin, public=False))
    public = await _push_everything(admin, await _project(admin, public=True))
    async with make_client(app, (await _user(state), PASSWORD)) as outsider:
        for client, status in ((anon, 401), (outsider, 404)):
            for path in (
                f"{API}/projects/{private.project}/repositories",
                _artifacts_url(private),
                _artifacts_url(private) + "/artifacts",
                _artifacts_url(private) + "/artifacts/v1",
                _artifacts_url(private) + "/artifacts/v1/tags",
                _artifacts_url(private) + "/artifacts/v1/accessories",
                f"{API}/projects/{private.project}/artifacts",
            ):
                response = await client.get(path)
                assert response.status_code == status, (path, response.text)
            readable = await client.get(_artifacts_url(public) + "/artifacts/v1")
            assert readable.status_code == 200
            history = await client.get(
                _artifacts_url(public) + "/artifacts/v1/additions/build_history",
                headers=SKIP_CONTRACT,
            )
            assert history.status_code == 200
            everywhere = await client.get(
                f"{API}/repositories", params={"page_size": 100, "q": f"name={private.repo}"}
            )
            assert everywhere.json() == []
            seen = await client.get(f"{API}/repositories", params={"q": f"name={public.repo}"})
            assert [r["name"] for r in seen.json()] == [public.repo]


async def test_project_artifacts(admin: httpx.AsyncClient, pushed: Pushed) -> None:
    response = await admin.get(
        f"{API}/projects/{pushed.project}/artifacts",
        params={"q": "type=IMAGE", "with_tag": "false", "page_size": 100},
    )
    assert response.status_code == 200, response.text
    assert {a["repository_name"] for a in response.json()} == {pushed.repo}
    assert response.headers["X-Total-Count"] == "3"  # v1, v2, the index: not its child


async def test_labels_and_immutable_status(
    admin: httpx.AsyncClient, state: AppState, pushed: Pushed
) -> None:
    async with state.db.write() as session:
        project_id = await session.scalar(
            select(Project.project_id).where(Project.name == pushed.project)
        )
        v1_id, v2_id = [
            await session.scalar(
                select(Artifact.id).where(
                    Artifact.repository_name == pushed.repo, Artifact.digest == digest
                )
            )
            for digest in (pushed.v1, pushed.v2)
        ]
        red = Label(name=_name("red"), scope="p", project_id=project_id, color="#f00")
        blue = Label(name=_name("blue"), scope="p", project_id=project_id)
        session.add_all([red, blue])
        await session.flush()
        session.add_all(
            [
                LabelReference(label_id=red.id, artifact_id=v1_id),
                LabelReference(label_id=blue.id, artifact_id=v1_id),
                LabelReference(label_id=red.id, artifact_id=v2_id),
            ]
        )
        red_id, blue_id = red.id, blue.id
    rule = await admin.post(
        f"{API}/projects/{pushed.project}/immutabletagrules",
        json={
            "action": "immutable",
            "template": "immutable_template",
            "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "v1"}],
            "scope_selectors": {
                "repository": [
                    {"kind": "doublestar", "decoration": "repoMatches", "pattern": "team/**"}
                ]
            },
        },
    )
    assert rule.status_code == 201, rule.text

    url = _artifacts_url(pushed) + "/artifacts"

    async def digests(q: str) -> set[str]:
        response = await admin.get(url, params={"q": q})
        assert response.status_code == 200, response.text
        return {a["digest"] for a in response.json()}

    assert await digests(f"labels=({red_id} {blue_id})") == {pushed.v1}
    assert await digests(f"labels={{{red_id} {blue_id}}}") == {pushed.v1, pushed.v2}
    assert await digests(f"labels={red_id}") == {pushed.v1, pushed.v2}
    assert await digests(f"labels={blue_id},tags=v2") == set()

    labelled = await admin.get(
        f"{url}/v1", params={"with_label": "true", "with_immutable_status": "true"}
    )
    body = labelled.json()
    assert {label["id"] for label in body["labels"]} == {red_id, blue_id}
    assert body["tags"][0]["immutable"] is True
    listed = await admin.get(url, params={"with_immutable_status": "true", "q": "tags=~v"})
    immutable = {a["digest"]: a["tags"][0]["immutable"] for a in listed.json()}
    assert immutable == {pushed.v1: True, pushed.v2: False}
    without = await admin.get(f"{url}/v1")
    assert without.json()["tags"][0]["immutable"] is False
    assert "labels" not in without.json()
    tags = await admin.get(f"{url}/v1/tags", params={"with_immutable_status": "true"})
    assert tags.json()[0]["immutable"] is True


async def test_accessories_pushed_before_their_subject(admin: httpx.AsyncClient) -> None:
    project = await _project(admin, public=False)
    inner = _name("early")
    repo = f"{project}/{inner}"
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": inner}).encode()
    config_digest = await push_blob(admin, repo, config)
    subject = image_manifest((config_digest, len(config)), [])
    subject_digest = digest_of(subject)

    empty = await push_blob(admin, repo, b"{}")
    referrer = image_manifest(
        (empty, 2),
        [],
        subject=(subject_digest, len(subject)),
        artifact_type="application/vnd.cncf.notary.signature",
        config_type="application/vnd.oci.empty.v1+json",
    )
    referrer_digest = await _put_manifest(admin, repo, digest_of(referrer), referrer, OCI_MANIFEST)
    signature = image_manifest((config_digest, len(config)), [], annotations={"sig": inner})
    sig_tag = subject_digest.replace(":", "-") + ".sig"
    signature_digest = await _put_manifest(admin, repo, sig_tag, signature, OCI_MANIFEST)
    await _put_manifest(admin, repo, "latest", subject, OCI_MANIFEST)

    url = f"{API}/projects/{project}/repositories/{inner}/artifacts/latest/accessories"
    listed = await admin.get(url, params={"sort": "type"})
    assert listed.status_code == 200, listed.text
    assert [(a["digest"], a["type"]) for a in listed.json()] == [
        (signature_digest, "signature.cosign"),
        (referrer_digest, "signature.notation"),
    ]
    artifacts = await admin.get(f"{API}/projects/{project}/repositories/{inner}/artifacts")
    assert [a["digest"] for a in artifacts.json()] == [subject_digest]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2.0/ping",
        "/api/v2.0/projects/no-such-project",
        "/api/v2.0/projects?sort=nothing",
        "/v2/",
        "/v2/no/such/manifests/latest",
        "/service/token?service=dockyard",
        "/harbor",
        "/harbor/sign-in",
        "/harbor/static/console.css",
        "/no-such-page",
    ],
)
async def test_every_response_says_nosniff(anon: httpx.AsyncClient, path: str) -> None:
    response = await anon.get(path, headers=SKIP_CONTRACT)
    assert response.headers.get("x-content-type-options") == "nosniff", (path, response.status_code)
    assert len(response.headers.get_list("x-content-type-options")) == 1


async def test_chart_files_are_kept_per_archive(
    admin: httpx.AsyncClient, pushed: Pushed, state: AppState
) -> None:
    """A chart's README is unpacked once; later GETs answer from the cache (keyed by the
    archive's digest, which never changes)."""
    base = _artifacts_url(pushed) + "/artifacts/chart-0.1.0/additions/readme.md"
    before = set(state.chart_files.keys())
    first = await admin.get(base, headers=SKIP_CONTRACT)
    assert first.status_code == 200
    [layer] = set(state.chart_files.keys()) - before
    assert layer[1] == "readme.md"
    state.chart_files.put(layer, ("# from the cache\n", None))
    again = await admin.get(base, headers=SKIP_CONTRACT)
    assert again.text == "# from the cache\n"
    state.chart_files.put(layer, ("# My chart\n", None))

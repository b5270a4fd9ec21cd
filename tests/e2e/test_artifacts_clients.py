"""Artifact management through a real server with real clients.

skopeo pushes an image, a multi-arch index and a Helm chart (an OCI layout built by
``tests/support/helm_chart.py``); the oras SDK pushes a referrer (``subject``) and a
cosign-style signature tag (``sha256-<hex>.sig``). Harbor's API then lists them with
every ``with_*`` flag (an immutable-tag rule and a label make those flags say something,
and the label filters the list), copies across projects (skopeo pulls the copies), and
deletes a tag, then the artifact with its accessories.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import oras.oci
import oras.provider
import pytest
from tests.support.helm_chart import HELM_CONFIG, make_chart
from tests.support.oci_layout import (
    ImageInfo,
    IndexInfo,
    blob_path,
    layout_tags,
    make_image_layout,
    make_index_layout,
)
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

pytestmark = pytest.mark.e2e

API = "/api/v2.0"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SIGNATURE_TYPE = "application/vnd.dockyard.test.signature.v1+json"
COSIGN_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json"
WITH_ALL = {
    "with_tag": "true",
    "with_label": "true",
    "with_scan_overview": "true",
    "with_signature": "true",
    "with_immutable_status": "true",
    "with_accessory": "true",
}

_SELECT_ALL = {"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}
IMMUTABLE_1X = {
    "disabled": False,
    "action": "immutable",
    "template": "immutable_template",
    "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "1.*"}],
    "scope_selectors": {"repository": [_SELECT_ALL]},
}
"""An immutable-tag rule for tags ``1.*`` in every repository."""


@dataclass
class Pushed:
    """What the module pushed once, for every test to look at."""

    source: str
    """The source project."""
    image: ImageInfo
    index: IndexInfo
    chart_digest: str
    referrer: str
    signature: str
    signature_tag: str


def _api(server: DockyardServer) -> httpx.Client:
    return httpx.Client(base_url=server.url + API, auth=server.admin_auth, timeout=60)


def _repo(name: str) -> str:
    return name.replace("/", "%252F")


def _skopeo_push(skopeo: Skopeo, server: DockyardServer, source: str, ref: str) -> None:
    skopeo.run(
        "copy",
        "--all",
        "--dest-tls-verify=false",
        "--dest-creds",
        server.admin_creds,
        source,
        f"docker://{server.registry}/{ref}",
    )


def _skopeo_pull(skopeo: Skopeo, server: DockyardServer, ref: str, out: Path, tag: str) -> None:
    skopeo.run(
        "copy",
        "--all",
        "--src-tls-verify=false",
        "--src-creds",
        server.admin_creds,
        f"docker://{server.registry}/{ref}",
        f"oci:{out}:{tag}",
    )


def _exists(skopeo: Skopeo, server: DockyardServer, ref: str) -> bool:
    result = skopeo.run(
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        server.admin_creds,
        f"docker://{server.registry}/{ref}",
        check=False,
    )
    return result.returncode == 0


def _oras(server: DockyardServer, workdir: Path) -> tuple[oras.provider.Registry, str]:
    config_path = workdir / "docker-config.json"
    registry = oras.provider.Registry(hostname=server.registry, insecure=True)
    registry.login(
        username="admin",
        password=server.admin_password,
        hostname=server.registry,
        config_path=str(config_path),
    )
    return registry, str(config_path)


def _oras_push(
    registry: oras.provider.Registry,
    config_path: str,
    workdir: Path,
    target: str,
    *,
    layer: tuple[bytes, str],
    config_type: str,
    subject: dict[str, Any] | None = None,
) -> str:
    workdir.mkdir(parents=True, exist_ok=True)
    payload = workdir / "payload"
    payload.write_bytes(layer[0])
    config = workdir / "config.json"
    config.write_text("{}")
    response = registry.push(
        target=target,
        files=[f"{payload}:{layer[1]}"],
        manifest_config=f"{config}:{config_type}",
        subject=oras.oci.Subject(**subject) if subject else None,
        disable_path_validation=True,
        config_path=config_path,
        quiet=True,
    )
    assert response.status_code == 201, response.text
    return str(response.headers["Docker-Content-Digest"])


@pytest.fixture(scope="module")
def pushed(
    server: DockyardServer, skopeo: Skopeo, tmp_path_factory: pytest.TempPathFactory
) -> Pushed:
    work = tmp_path_factory.mktemp("artifacts")
    source = f"src{uuid.uuid4().hex[:10]}"
    # Public: oras-py keeps the first token it gets, and on a private project that is
    # the pull-only token of its first blob check, so its uploads would be refused.
    server.create_project(source, public=True)
    image = make_image_layout(work / "image", layers=2, layer_size=8 * 1024, tag="v1")
    _skopeo_push(skopeo, server, f"oci:{image.path}:v1", f"{source}/app:v1")
    index = make_index_layout(work / "index", layers=1, layer_size=4 * 1024, tag="1.0")
    _skopeo_push(skopeo, server, f"oci:{index.path}:1.0", f"{source}/multi:1.0")
    chart = make_chart(work / "chart", name="demo", version="0.1.0")
    _skopeo_push(skopeo, server, f"oci:{chart.layout}:0.1.0", f"{source}/charts/demo:0.1.0")

    registry, config_path = _oras(server, work)
    subject = {"mediaType": MANIFEST, "digest": image.manifest_digest, "size": image.manifest_size}
    referrer = _oras_push(
        registry,
        config_path,
        work / "referrer",
        f"{server.registry}/{source}/app:signed-by-oras",
        layer=(b"signed " + image.manifest_digest.encode(), "text/plain"),
        config_type=SIGNATURE_TYPE,
        subject=subject,
    )
    signature_tag = image.manifest_digest.replace(":", "-") + ".sig"
    signature = _oras_push(
        registry,
        config_path,
        work / "cosign",
        f"{server.registry}/{source}/app:{signature_tag}",
        layer=(json.dumps({"critical": {"image": image.manifest_digest}}).encode(), COSIGN_LAYER),
        config_type="application/vnd.oci.image.config.v1+json",
    )
    return Pushed(source, image, index, chart.manifest_digest, referrer, signature, signature_tag)


def _artifacts(api: httpx.Client, project: str, repository: str) -> dict[str, dict[str, Any]]:
    response = api.get(
        f"/projects/{project}/repositories/{_repo(repository)}/artifacts", params=WITH_ALL
    )
    assert response.status_code == 200, response.text
    return {a["digest"]: a for a in response.json()}


def test_listing_with_every_flag(server: DockyardServer, pushed: Pushed) -> None:
    with _api(server) as api:
        project_id = api.get(f"/projects/{pushed.source}").json()["project_id"]
        made = api.post(f"/projects/{pushed.source}/immutabletagrules", json=IMMUTABLE_1X)
        assert made.status_code == 201, made.text
        label = api.post(
            "/labels",
            json={"name": f"l{uuid.uuid4().hex[:8]}", "scope": "p", "project_id": project_id},
        )
        assert label.status_code == 201, label.text
        label_id = int(label.headers["location"].rsplit("/", 1)[1])
        attached = api.post(
            f"/projects/{pushed.source}/repositories/app/artifacts/v1/labels",
            json={"id": label_id},
        )
        assert attached.status_code == 200, attached.text

        app = _artifacts(api, pushed.source, "app")
        image = app[pushed.image.manifest_digest]
        assert [(t["name"], t["immutable"]) for t in image["tags"]] == [("v1", False)]
        assert [entry["id"] for entry in image["labels"]] == [label_id]
        accessories = {a["digest"] for a in image.get("accessories") or []}
        assert pushed.referrer in accessories
        assert pushed.signature in accessories
        filtered = api.get(
            f"/projects/{pushed.source}/repositories/app/artifacts",
            params={**WITH_ALL, "q": f"labels=({label_id})"},
        )
        assert filtered.status_code == 200, filtered.text
        assert [a["digest"] for a in filtered.json()] == [pushed.image.manifest_digest]

        multi = _artifacts(api, pushed.source, "multi")
        index = multi[pushed.index.index_digest]
        assert [(t["name"], t["immutable"]) for t in index["tags"]] == [("1.0", True)]
        children = {r["child_digest"] for r in index.get("references") or []}
        assert children == {i.manifest_digest for i in pushed.index.images}

        charts = _artifacts(api, pushed.source, "charts/demo")
        chart = charts[pushed.chart_digest]
        assert chart["type"] == "CHART"
        assert chart["media_type"] == HELM_CONFIG
        assert [t["name"] for t in chart["tags"]] == ["0.1.0"]


def test_copy_across_projects_and_pull_the_copies(
    server: DockyardServer, skopeo: Skopeo, pushed: Pushed, tmp_path: Path
) -> None:
    target = f"dst{uuid.uuid4().hex[:10]}"
    server.create_project(target)
    with _api(server) as api:
        by_tag = api.post(
            f"/projects/{target}/repositories/app/artifacts",
            params={"from": f"{pushed.source}/app:v1"},
        )
        assert by_tag.status_code == 201, by_tag.text
        by_digest = api.post(
            f"/projects/{target}/repositories/{_repo('nested/multi')}/artifacts",
            params={"from": f"{pushed.source}/multi@{pushed.index.index_digest}"},
        )
        assert by_digest.status_code == 201, by_digest.text
        chart = api.post(
            f"/projects/{target}/repositories/charts/artifacts",
            params={"from": f"{pushed.source}/charts/demo:0.1.0"},
        )
        assert chart.status_code == 201, chart.text
        copied = _artifacts(api, target, "app")
        assert [t["name"] for t in copied[pushed.image.manifest_digest]["tags"]] == ["v1"]

    out = tmp_path / "image"
    _skopeo_pull(skopeo, server, f"{target}/app:v1", out, "v1")
    assert layout_tags(out)["v1"] == pushed.image.manifest_digest
    for digest in pushed.image.blob_digests:
        assert (
            blob_path(out, digest).read_bytes() == blob_path(pushed.image.path, digest).read_bytes()
        )

    out = tmp_path / "index"
    _skopeo_pull(skopeo, server, f"{target}/nested/multi@{pushed.index.index_digest}", out, "x")
    assert layout_tags(out)["x"] == pushed.index.index_digest
    for image in pushed.index.images:
        assert blob_path(out, image.manifest_digest).exists()
    # By digest the copy carries every tag of the source, as Harbor does (issue 14 item 5).
    assert _exists(skopeo, server, f"{target}/nested/multi:1.0")
    assert _exists(skopeo, server, f"{target}/charts:0.1.0")
    # The accessories travelled with their subject.
    with server.client() as registry:
        referrers = registry.get(f"/v2/{target}/app/referrers/{pushed.image.manifest_digest}")
    assert referrers.status_code == 200, referrers.text
    assert pushed.referrer in {m["digest"] for m in referrers.json()["manifests"]}
    assert _exists(skopeo, server, f"{target}/app:{pushed.signature_tag}")


def test_delete_tag_then_delete_artifact(
    server: DockyardServer, skopeo: Skopeo, pushed: Pushed, tmp_path: Path
) -> None:
    # Work on a copy of its own so the other tests' artifacts stay put.
    project = f"del{uuid.uuid4().hex[:10]}"
    server.create_project(project)
    digest = pushed.image.manifest_digest
    base = f"/projects/{project}/repositories/app/artifacts"
    with _api(server) as api:
        copied = api.post(base, params={"from": f"{pushed.source}/app:v1"})
        assert copied.status_code == 201, copied.text
        assert api.post(f"{base}/v1/tags", json={"name": "v2"}).status_code == 201
        assert api.post(f"{base}/v1/tags", json={"name": "v2"}).status_code == 409

        assert api.delete(f"{base}/{digest}/tags/v1").status_code == 200
        assert not _exists(skopeo, server, f"{project}/app:v1")
        assert _exists(skopeo, server, f"{project}/app:v2")
        assert _exists(skopeo, server, f"{project}/app@{digest}")

        assert api.delete(f"{base}/v2").status_code == 200
        for ref in (f"app@{digest}", "app:v2", f"app:{pushed.signature_tag}"):
            assert not _exists(skopeo, server, f"{project}/{ref}")
        assert not _exists(skopeo, server, f"{project}/app@{pushed.referrer}")
        assert _artifacts(api, project, "app") == {}
        # The source project still holds everything.
        assert _exists(skopeo, server, f"{pushed.source}/app:v1")
        assert _exists(skopeo, server, f"{pushed.source}/app:{pushed.signature_tag}")

"""Files private to the service (issue 13.4): after a push through a real server started
under a permissive umask, on a data directory left open to others, the data directory and
every directory below are 0700 and every file (``dockyard.db`` with ``-wal``/``-shm``, blobs,
manifests, partial uploads) 0600; the open directory was tightened with a warning."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.registry_helpers import digest_of, image_manifest
from tests.support.server import DockyardServer

pytestmark = pytest.mark.e2e

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardServer]:
    root = tmp_path_factory.mktemp("modes")
    data_dir = root / "data"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    previous = os.umask(0o022)  # what the server inherits; it must not rely on it
    try:
        with DockyardServer(data_dir=data_dir) as server:
            yield server
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_pushed_data_is_private_to_the_service(open_server: DockyardServer) -> None:
    repo = "library/modes"
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = os.urandom(200_000)
    with open_server.client() as client:
        for blob in (config, layer):
            pushed = client.post(
                f"/v2/{repo}/blobs/uploads/", params={"digest": digest_of(blob)}, content=blob
            )
            assert pushed.status_code == 201, pushed.text
        manifest = image_manifest(
            (digest_of(config), len(config)), [(digest_of(layer), len(layer))]
        )
        put = client.put(
            f"/v2/{repo}/manifests/v1", content=manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        assert put.status_code == 201, put.text
        # An upload left open keeps its partial file under uploads/.
        started = client.post(f"/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202, started.text
        chunk = client.patch(
            started.headers["Location"],
            content=b"partial" * 1000,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert chunk.status_code == 202, chunk.text
        assert client.get(f"/v2/{repo}/blobs/{digest_of(layer)}").content == layer

    data_dir = open_server.data_dir
    assert mode(data_dir) == 0o700
    files = [p for p in data_dir.rglob("*") if not p.is_dir()]
    names = {p.name for p in files}
    for expected in ("dockyard.db", "dockyard.db-wal", "dockyard.db-shm"):
        assert expected in names
    assert {digest_of(b).split(":")[1] for b in (config, layer, manifest)} <= names
    assert any(p.parent.name == "uploads" for p in files), sorted(map(str, files))
    loose = {
        str(p.relative_to(data_dir)): oct(mode(p))
        for p in data_dir.rglob("*")
        if mode(p) != (0o700 if p.is_dir() else 0o600)
    }
    assert loose == {}
    assert f"{data_dir} was open to other users (mode 0755): made it 0700" in (open_server.output())

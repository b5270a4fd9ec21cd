"""``dockyard serve`` with its blobs in a real S3 store (SeaweedFS), two server workers.

The in-process suites drive the S3 driver inside one process; this one covers what only a
served process does: the store is checked once before the server forks its workers, and
each worker then talks to the store itself.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.e2e.test_skopeo_push_pull import assert_same_image, pull, push
from tests.support.oci_layout import make_image_layout
from tests.support.seaweedfs import s3_env, s3_storage, shared_seaweedfs
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

from dockyard.storage.layout import blob_key

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def bucket() -> str:
    return shared_seaweedfs().new_bucket()


@pytest.fixture(scope="module")
def s3_server(bucket: str) -> Iterator[DockyardServer]:
    env = s3_env(shared_seaweedfs(), bucket)
    with DockyardServer(env=env, extra_args=("--workers", "2")) as running:
        yield running


def test_push_and_pull_through_two_workers(
    skopeo: Skopeo, s3_server: DockyardServer, bucket: str, repo_name: str, tmp_path: Path
) -> None:
    image = make_image_layout(tmp_path / "src", layers=3, tag="v1")
    push(skopeo, s3_server, f"oci:{image.path}:v1", f"{repo_name}:v1")

    # Several rounds: with two workers, both serve some of the requests.
    for round_ in range(3):
        out = tmp_path / f"out{round_}"
        pull(skopeo, s3_server, f"{repo_name}:v1", out, "v1")
        assert_same_image(out, "v1", image)

    # The bytes are in the bucket, not under the data directory.
    assert not list(s3_server.data_dir.rglob("blobs/sha256/*/*"))
    storage = s3_storage(shared_seaweedfs(), bucket)
    for digest in image.blob_digests:
        found = asyncio.run(storage.stat(blob_key(digest)))
        assert found is not None
        assert found.size == (tmp_path / "src" / "blobs" / "sha256" / digest[7:]).stat().st_size


def test_missing_bucket_stops_the_start_with_one_line(tmp_path: Path) -> None:
    env = s3_env(shared_seaweedfs(), "no-such-bucket-here")
    server = DockyardServer(env=env, data_dir=tmp_path / "data", startup_timeout=30)
    with pytest.raises(Exception, match="exited with code 1") as failure:
        server.start()
    server.close()
    assert "storage" in str(failure.value)
    assert "Traceback" not in server.output()


def test_every_worker_reaches_the_store(s3_server: DockyardServer, repo_name: str) -> None:
    """New connections land on both workers; each must answer a blob upload and read."""
    data = b"x" * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    name = repo_name.replace("library/", "library/w-")
    for _ in range(6):
        # A fresh client each time: a new connection, which either worker may accept.
        with httpx.Client(base_url=s3_server.url, auth=s3_server.admin_auth, timeout=30) as c:
            put = c.post(f"/v2/{name}/blobs/uploads/?digest={digest}", content=data)
            assert put.status_code == 201, put.text
            got = c.get(f"/v2/{name}/blobs/{digest}")
            assert got.status_code == 200
            assert got.content == data

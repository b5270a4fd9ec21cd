"""``dockyard serve`` on S3 (SeaweedFS) as a real process: its forked worker reaches the store.

The start-up check of the store used to run in the server's main process before the
workers were forked; the workers then waited forever at their first store request.
Two nodes on one PostgreSQL database and one bucket serve each other's pushes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.oci_layout import layout_tags, make_image_layout
from tests.support.postgres import postgres_admin_url, temporary_database
from tests.support.seaweedfs import SeaweedFS, s3_settings, start_seaweedfs
from tests.support.server import DockyardServer, free_port
from tests.support.skopeo import Skopeo

pytestmark = pytest.mark.e2e

SERVE = (sys.executable, "-m", "dockyard", "serve")


@pytest.fixture(scope="module")
def seaweed() -> Iterator[SeaweedFS]:
    server = start_seaweedfs()
    try:
        yield server
    finally:
        server.stop()


def _env(seaweed: SeaweedFS, bucket: str) -> dict[str, str]:
    return {
        f"DOCKYARD_{k.upper()}": ("true" if v is True else str(v))
        for k, v in s3_settings(seaweed, bucket).items()
    }


def _copy(skopeo: Skopeo, creds: str, source: str, dest: str) -> None:
    skopeo.run(
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        creds,
        "--dest-creds",
        creds,
        source,
        dest,
    )


def test_a_served_worker_stores_and_serves_blobs_in_the_bucket(
    seaweed: SeaweedFS, skopeo: Skopeo, repo_name: str, tmp_path: Path
) -> None:
    bucket = seaweed.new_bucket()
    image = make_image_layout(tmp_path / "src", layers=2, tag="v1")
    with DockyardServer(env=_env(seaweed, bucket)) as server:
        _copy(
            skopeo,
            server.admin_creds,
            f"oci:{image.path}:v1",
            f"docker://{server.registry}/{repo_name}:v1",
        )
        _copy(
            skopeo,
            server.admin_creds,
            f"docker://{server.registry}/{repo_name}:v1",
            f"oci:{tmp_path / 'out'}:v1",
        )
    assert layout_tags(tmp_path / "out")["v1"] == image.manifest_digest
    # The layers are objects in the bucket (read through the filer), not files on the node.
    with seaweed.client() as http:
        for digest in image.layer_digests:
            hex_ = digest.removeprefix("sha256:")
            assert http.get(f"/buckets/{bucket}/blobs/sha256/{hex_[:2]}/{hex_}").status_code == 200


def test_two_nodes_on_one_database_and_bucket_serve_each_others_pushes(
    seaweed: SeaweedFS, skopeo: Skopeo, repo_name: str, tmp_path: Path
) -> None:
    bucket = seaweed.new_bucket()
    image = make_image_layout(tmp_path / "src", layers=2, tag="v1")
    with temporary_database(postgres_admin_url()) as url:
        env = _env(seaweed, bucket)
        with (
            DockyardServer(database_url=url, env=env) as first,
            DockyardServer(
                database_url=url, env=env, admin_password=first.admin_password
            ) as second,
        ):
            _copy(
                skopeo,
                first.admin_creds,
                f"oci:{image.path}:v1",
                f"docker://{first.registry}/{repo_name}:v1",
            )
            _copy(
                skopeo,
                second.admin_creds,
                f"docker://{second.registry}/{repo_name}:v1",
                f"oci:{tmp_path / 'out'}:v1",
            )
    assert layout_tags(tmp_path / "out")["v1"] == image.manifest_digest


def test_serve_on_a_missing_bucket_stops_with_one_line_naming_it(
    seaweed: SeaweedFS, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **_env(seaweed, "no-such-bucket-here"),
        "DOCKYARD_ADMIN_PASSWORD": "Dockyard-e2e-12345",
    }
    result = subprocess.run(
        [*SERVE, "--port", str(free_port()), "--data-dir", str(tmp_path / "data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "no-such-bucket-here" in errors[0]
    assert "Traceback" not in result.stderr

"""What a client shows when the registry's disk is full (issue 12, item 6).

A real ``dockyard serve`` whose data directory is a small tmpfs; skopeo pushes an image that
does not fit. skopeo must fail with the server's "storage is full" message (not "500
internal server error"), and the server must keep no upload session or partial file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.oci_layout import make_image_layout
from tests.support.podman import Podman
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo
from tests.support.small_fs import small_filesystem

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def full_server() -> Iterator[DockyardServer]:
    with (
        small_filesystem(48 * MIB) as where,
        DockyardServer(
            data_dir=where / "data",
            env={
                "DOCKYARD_MIN_FREE_BYTES": str(8 * MIB),
                "DOCKYARD_DISK_RESERVE_BYTES": str(2 * MIB),
            },
        ) as server,
    ):
        yield server


def test_skopeo_shows_that_storage_is_full(
    full_server: DockyardServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    make_image_layout(layout, layers=1, layer_size=64 * MIB, tag="big")
    pushed = skopeo.run(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        full_server.admin_creds,
        f"oci:{layout}:big",
        f"docker://{full_server.registry}/library/big:1",
        check=False,
    )
    assert pushed.returncode != 0
    assert "storage is full" in pushed.stderr, pushed.stderr
    assert "internal server error" not in pushed.stderr
    uploads = full_server.data_dir / "storage" / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []

    # a small image still fits
    small = tmp_path / "small"
    make_image_layout(small, layers=1, layer_size=MIB, tag="small")
    skopeo.run(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        full_server.admin_creds,
        f"oci:{small}:small",
        f"docker://{full_server.registry}/library/small:1",
    )


def test_podman_shows_that_storage_is_full(
    full_server: DockyardServer, podman: Podman, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    make_image_layout(layout, layers=1, layer_size=64 * MIB, tag="big")
    image = podman.pull(f"oci:{layout}:big")
    try:
        pushed = podman.run(
            "push",
            "--tls-verify=false",
            "--creds",
            full_server.admin_creds,
            image,
            f"{full_server.registry}/library/big:podman",
            check=False,
        )
    finally:
        podman.run("rmi", "-a", "-f", check=False)
    assert pushed.returncode != 0
    assert "storage is full" in pushed.stderr, pushed.stderr
    uploads = full_server.data_dir / "storage" / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []

"""``--tls-cert``/``--tls-key``: Dockyard serves HTTPS itself, and skopeo pushes over it."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.certs import self_signed
from tests.support.oci_layout import make_image_layout
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo


def _self_signed(directory: Path) -> tuple[Path, Path]:
    pair = self_signed()
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(pair.cert_pem)
    key_path.write_bytes(pair.key_pem)
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardServer]:
    cert, key = _self_signed(tmp_path_factory.mktemp("tls"))
    with DockyardServer(tls=(cert, key)) as server:
        yield server


def test_https_answers_and_realm_is_https(tls_server: DockyardServer) -> None:
    assert tls_server.tls is not None
    context = ssl.create_default_context(cafile=str(tls_server.tls[0]))
    with httpx.Client(verify=context) as client:
        response = client.get(f"{tls_server.url}/v2/")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith(
        f'Bearer realm="https://127.0.0.1:{tls_server.port}/service/token"'
    )


def test_skopeo_push_and_pull_over_tls(
    tls_server: DockyardServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    assert tls_server.tls is not None
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(tls_server.tls[0].read_bytes())
    image = make_image_layout(tmp_path / "src", layers=2, seed=7)
    ref = f"docker://{tls_server.registry}/library/tls-image:v1"
    skopeo.run(
        "copy",
        "--dest-cert-dir",
        str(certs),
        "--dest-creds",
        tls_server.admin_creds,
        f"oci:{tmp_path / 'src'}:latest",
        ref,
    )
    skopeo.run(
        "copy",
        "--src-cert-dir",
        str(certs),
        "--src-creds",
        tls_server.admin_creds,
        ref,
        f"oci:{tmp_path / 'back'}:latest",
    )
    index = (tmp_path / "back" / "index.json").read_text()
    assert image.manifest_digest in index

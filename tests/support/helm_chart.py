"""Build a small Helm chart as Helm pushes it to an OCI registry, for tests to push.

``helm push`` stores a chart as an OCI manifest whose config (media type
``application/vnd.cncf.helm.config.v1+json``) is ``Chart.yaml`` as JSON, and whose
one layer (``application/vnd.cncf.helm.chart.content.v1.tar+gzip``) is the packaged
chart: a ``.tgz`` of ``<name>/Chart.yaml``, ``values.yaml``, ``README.md`` and templates.
``make_chart`` writes that tgz and config, and an OCI image layout holding the manifest,
so a test can push with skopeo (``oci:DIR:TAG``) or with any OCI client (the files).
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.oci_layout import (
    MEDIA_TYPE_IMAGE_MANIFEST,
    _add_to_layout_index,
    _init_layout,
    write_blob,
)

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART_CONTENT = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


@dataclass(frozen=True)
class HelmChart:
    """A chart written by ``make_chart``: its files, and its manifest in an OCI layout."""

    name: str
    version: str
    tgz: Path
    config: Path
    layout: Path
    manifest_digest: str
    manifest_size: int
    values_yaml: str
    readme: str

    @property
    def chart_metadata(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.config.read_text())
        return data


def _chart_files(name: str, version: str, values: str, readme: str) -> dict[str, str]:
    chart_yaml = (
        "apiVersion: v2\n"
        f"name: {name}\n"
        f"version: {version}\n"
        "description: A chart Dockyard's tests build\n"
        "type: application\n"
        'appVersion: "1.0.0"\n'
        "dependencies:\n"
        "  - name: common\n"
        '    version: "2.x.x"\n'
        "    repository: https://charts.example.com\n"
    )
    deployment = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n"
        "  name: {{ .Release.Name }}\nspec:\n  replicas: {{ .Values.replicaCount }}\n"
    )
    return {
        f"{name}/Chart.yaml": chart_yaml,
        f"{name}/values.yaml": values,
        f"{name}/README.md": readme,
        f"{name}/templates/deployment.yaml": deployment,
    }


def _tgz(files: dict[str, str]) -> bytes:
    """A deterministic gzip'd tar (fixed times and owners), as ``helm package`` makes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def make_chart(path: Path, name: str = "demo", version: str = "0.1.0") -> HelmChart:
    """Write ``<name>-<version>.tgz``, ``config.json`` and an OCI layout ``layout/`` (tag
    ``version``) under ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    values = "replicaCount: 2\nimage:\n  repository: nginx\n  tag: stable\n"
    readme = f"# {name}\n\nA chart for Dockyard's end-to-end tests.\n"
    tgz_bytes = _tgz(_chart_files(name, version, values, readme))
    metadata = {
        "name": name,
        "version": version,
        "description": "A chart Dockyard's tests build",
        "apiVersion": "v2",
        "appVersion": "1.0.0",
        "type": "application",
        "dependencies": [
            {"name": "common", "version": "2.x.x", "repository": "https://charts.example.com"}
        ],
    }
    config_bytes = json.dumps(metadata, separators=(",", ":")).encode()
    tgz = path / f"{name}-{version}.tgz"
    tgz.write_bytes(tgz_bytes)
    config = path / "config.json"
    config.write_bytes(config_bytes)

    layout = path / "layout"
    _init_layout(layout)
    config_digest, config_size = write_blob(layout, config_bytes)
    layer_digest, layer_size = write_blob(layout, tgz_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_IMAGE_MANIFEST,
        "config": {"mediaType": HELM_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": HELM_CHART_CONTENT, "digest": layer_digest, "size": layer_size}],
    }
    manifest_digest, manifest_size = write_blob(
        layout, json.dumps(manifest, separators=(",", ":")).encode()
    )
    _add_to_layout_index(layout, version, MEDIA_TYPE_IMAGE_MANIFEST, manifest_digest, manifest_size)
    return HelmChart(
        name=name,
        version=version,
        tgz=tgz,
        config=config,
        layout=layout,
        manifest_digest=manifest_digest,
        manifest_size=manifest_size,
        values_yaml=values,
        readme=readme,
    )

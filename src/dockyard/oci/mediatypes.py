"""Media types Dockyard gives meaning to.

Any other well-formed media type is carried through untouched (artifacts,
signatures, SBOMs, Helm charts...).
"""

from __future__ import annotations

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_FOREIGN_LAYER",
    "DOCKER_LAYER",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "DOCKER_SCHEMA1",
    "DOCKER_SCHEMA1_SIGNED",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "NON_DISTRIBUTABLE_LAYER_TYPES",
    "OCI_CONFIG",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "OCI_NONDISTRIBUTABLE_LAYERS",
    "SCHEMA1_TYPES",
    "SUPPORTED_MANIFEST_TYPES",
    "base_media_type",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_NONDISTRIBUTABLE_LAYERS = frozenset(
    {
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

#: Single-image manifests.
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
#: Manifests that list other manifests.
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
#: Every manifest type Dockyard stores.
SUPPORTED_MANIFEST_TYPES = MANIFEST_TYPES | INDEX_TYPES
#: Docker schema 1, recognised only to refuse it with a clear message.
SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})
#: Layers a registry need not hold: clients fetch them from their ``urls``.
NON_DISTRIBUTABLE_LAYER_TYPES = OCI_NONDISTRIBUTABLE_LAYERS | {DOCKER_FOREIGN_LAYER}


def base_media_type(value: str) -> str:
    """The ``type/subtype`` of a ``Content-Type`` value, parameters dropped, lowercased.

    ``"application/vnd.oci.image.manifest.v1+json; charset=utf-8"`` gives
    ``"application/vnd.oci.image.manifest.v1+json"``. Media types are
    case-insensitive (RFC 6838 section 4.2).
    """
    return value.split(";", 1)[0].strip().lower()

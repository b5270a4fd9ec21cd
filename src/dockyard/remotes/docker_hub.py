"""``docker-hub``: Docker Hub. Its registry is ``registry-1.docker.io`` behind the Docker
token flow (``auth.docker.io``), which the distribution code already speaks; what is
Docker Hub's own is its names:

- a repository is exactly ``<namespace>/<name>``; an official image is named without a
  namespace and lives in ``library/`` (``nginx`` is ``library/nginx``);
- a namespace (a Docker ID or organisation) is 4 to 30 lowercase letters and digits
  (``library`` is the exception; older ids of 2 or 3 characters still exist, and a user
  cannot create them, so they are accepted when read but a namespace is never created);
- there is no ``_catalog``: repositories are named, not listed.

The endpoint URL ``https://hub.docker.com`` (or ``docker.io``) means the real registry;
any other URL is used as given (a mirror, or a test's local registry).
"""

from __future__ import annotations

import re
from typing import ClassVar

import httpx

from dockyard.remotes.adapter import TRIGGER_MANUAL, TRIGGER_SCHEDULED, FilterSpec, KindInfo
from dockyard.remotes.client import RemoteError, RemoteUnsupported
from dockyard.remotes.distribution import DistributionAdapter

HUB_URL = "https://hub.docker.com"
REGISTRY_URL = "https://registry-1.docker.io"
HUB_HOSTS = frozenset({"hub.docker.com", "docker.io", "index.docker.io", "registry-1.docker.io"})
OFFICIAL = "library"
_NAMESPACE = re.compile(r"[a-z0-9]{2,30}")
_NAME = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")


def registry_url(url: str) -> str:
    """Where the registry API of an endpoint URL is (the Hub's web URL means the registry)."""
    try:
        host = httpx.URL(url).host
    except (httpx.InvalidURL, ValueError):
        return url
    return REGISTRY_URL if host in HUB_HOSTS else url


def hub_repository(name: str) -> str:
    """``name`` as Docker Hub spells it: ``nginx`` -> ``library/nginx``; ``RemoteError``
    for a name the Hub cannot hold (no deeper paths, Hub namespace rules)."""
    parts = name.split("/")
    if len(parts) == 1:
        parts = [OFFICIAL, parts[0]]
    if len(parts) != 2:
        raise RemoteError(
            f"{name!r}: Docker Hub repositories are <namespace>/<name>, not deeper paths"
        )
    namespace, repository = parts
    if not _NAMESPACE.fullmatch(namespace):
        raise RemoteError(
            f"{name!r}: a Docker Hub namespace is 2 to 30 lowercase letters and digits"
        )
    if not _NAME.fullmatch(repository) or len(repository) > 255:
        raise RemoteError(f"{name!r}: not a valid Docker Hub repository name")
    return f"{namespace}/{repository}"


def creatable_namespace(namespace: str) -> bool:
    """Whether the Hub would let someone create ``namespace`` (4 to 30 letters and digits)."""
    return 4 <= len(namespace) <= 30 and _NAMESPACE.fullmatch(namespace) is not None


class DockerHubAdapter(DistributionAdapter):
    info: ClassVar[KindInfo] = KindInfo(
        kind="docker-hub",
        description="Docker Hub (registry-1.docker.io, its token flow and namespace rules).",
        filters=(FilterSpec("name", "input"), FilterSpec("tag", "input")),
        triggers=(TRIGGER_MANUAL, TRIGGER_SCHEDULED),
        copy_by_chunk=True,
        lists_namespaces=False,
        endpoint_type="fix",
        endpoints=(("hub.docker.com", HUB_URL),),
    )

    def repository(self, name: str) -> str:
        return hub_repository(name)

    async def list_repositories(self, namespace: str | None = None) -> list[str]:
        raise RemoteUnsupported("Docker Hub has no catalog: name the repositories to copy")

    async def ensure_namespace(self, namespace: str) -> None:
        """A Hub namespace is an account or organisation, made on the Hub's site."""
        if not creatable_namespace(namespace) and namespace != OFFICIAL:
            raise RemoteError(
                f"{namespace!r} cannot be a Docker Hub namespace (4 to 30 lowercase letters"
                " and digits)"
            )

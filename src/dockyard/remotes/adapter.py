"""The one interface every kind of remote registry is reached through.

Replication copies with it (list, HEAD first, mount or upload blobs, put manifests,
replicate deletions) and the proxy cache fetches with it (HEAD a tag for freshness, GET
a manifest, stream a blob). Each kind is one module (``docker_registry.py``,
``harbor.py``, ``docker_hub.py``) with one class; ``kinds.py`` lists them.

The adapter moves bytes and says what the remote said; it does not trust them. A blob
stream is the remote's bytes as they come: whoever stores them checks the digest (the
registry's upload path does), so a broken remote cannot poison anything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

# What a policy or the console may offer, per kind (Harbor's ``FilterStyle`` and triggers).
FILTER_NAME = "name"
FILTER_TAG = "tag"
FILTER_LABEL = "label"
FILTER_RESOURCE = "resource"
TRIGGER_MANUAL = "manual"
TRIGGER_SCHEDULED = "scheduled"
TRIGGER_EVENT = "event_based"


@dataclass(frozen=True, slots=True)
class FilterSpec:
    type: str
    style: str
    """``input`` (a pattern), ``list`` or ``radio`` (one of ``values``)."""
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class KindInfo:
    """What a kind of remote supports (Harbor's ``RegistryInfo`` and ``RegistryProviderInfo``)."""

    kind: str
    description: str
    filters: tuple[FilterSpec, ...]
    triggers: tuple[str, ...]
    copy_by_chunk: bool
    lists_namespaces: bool
    """Whether ``list_namespaces`` works (Harbor projects); else names are typed in."""
    endpoint_type: str = "input"
    """``fix`` when the kind has fixed endpoints (``endpoints``), ``input`` otherwise."""
    endpoints: tuple[tuple[str, str], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ManifestRef:
    """What a HEAD of a manifest tells: enough to decide whether to fetch it."""

    digest: str
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class BlobStream:
    """A blob being read from a remote: ``size`` is the whole blob's, ``offset`` where the
    bytes of ``chunks`` start."""

    size: int
    offset: int
    chunks: AsyncIterator[bytes]


@dataclass(frozen=True, slots=True)
class Referrers:
    """The manifests whose ``subject`` is an artifact (OCI 1.1): their descriptors, and
    whether the registry answered with the referrers API (``api``) or only the fallback
    tag (``sha256-<hex>``, an index of them) could be read."""

    descriptors: list[dict[str, Any]]
    api: bool


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag of a subject: ``sha256:<hex>`` -> ``sha256-<hex>``."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}-{encoded}"


BlobSource = Callable[[int], AsyncIterator[bytes]]
"""The bytes of a blob from an offset on (so an upload can resume where the remote has it)."""


class Adapter(Protocol):
    """A remote registry, as replication and the proxy cache use it.

    Failures are ``client.RemoteError`` subclasses: unreachable, auth, not found,
    unsupported (the remote or kind cannot do it), protocol (a wrong answer).
    """

    info: ClassVar[KindInfo]

    async def ping(self) -> None:
        """Reach the remote and check the credentials; raise when either fails."""

    async def list_namespaces(self) -> list[str]:
        """Namespaces (Harbor projects); ``RemoteUnsupported`` where the kind has none to list."""

    async def list_repositories(self, namespace: str | None = None) -> list[str]:
        """Repositories, all or in ``namespace``; ``RemoteUnsupported`` without a catalog."""

    async def list_tags(self, repository: str) -> list[str]: ...

    async def head_manifest(self, repository: str, reference: str) -> ManifestRef | None:
        """The manifest's digest, type and size, or None when the remote has no such one."""

    async def get_manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest's bytes (checked against ``reference`` when it is a digest)."""

    async def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> str:
        """Store ``manifest`` under ``reference`` (a tag or its digest); returns the digest."""

    async def delete_manifest(self, repository: str, digest: str) -> None: ...

    async def list_referrers(self, repository: str, digest: str) -> Referrers:
        """The artifacts whose ``subject`` is ``digest``: the referrers API, or the
        fallback tag where the remote has no such API."""

    async def delete_tag(self, repository: str, tag: str) -> None: ...

    async def blob_exists(self, repository: str, digest: str) -> int | None:
        """The blob's size when the repository has it, else None."""

    async def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Link a blob the remote holds in ``from_repository``; False when it would not."""

    def open_blob(
        self, repository: str, digest: str, offset: int = 0
    ) -> AbstractAsyncContextManager[BlobStream]:
        """Read a blob (from ``offset`` on, for a resumed copy) as a stream."""

    async def push_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        source: BlobSource,
        *,
        chunk_size: int | None = None,
    ) -> None:
        """Upload a blob: in one request, or in ``chunk_size`` pieces resumed where the
        remote has the upload when a piece fails."""

    async def ensure_namespace(self, namespace: str) -> None:
        """Make the namespace exist where the kind has namespaces to make (Harbor projects)."""

    async def aclose(self) -> None: ...

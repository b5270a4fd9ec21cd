"""The pull-through seam: what ``/v2/`` asks before it serves from, or writes into, a
repository that may belong to a proxy cache project.

The registry knows no upstream. ``create_app`` sets ``RegistryService.pull_through``
(``proxy/cache.py``); the manifest and blob handlers ask it first. For a repository of an
ordinary project each call answers from a short-lived in-memory lookup of whether the
project is a proxy cache (one indexed statement per project per process every 2 s) and
does nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from dockyard.registry.service import BlobInfo

__all__ = ["PullThrough", "UpstreamBlob", "UpstreamManifest"]


@dataclass(frozen=True, slots=True)
class UpstreamManifest:
    """A manifest fetched (and verified) from the upstream, served before it is stored."""

    digest: str
    media_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class UpstreamBlob:
    """A blob being fetched from the upstream, served as its bytes arrive; the stream
    raises (breaking the response) if they turn out not to be the blob."""

    digest: str
    size: int | None
    chunks: AsyncIterator[bytes]


class PullThrough(Protocol):
    async def manifest(self, repository: str, reference: str) -> UpstreamManifest | None:
        """Make the local copy of ``reference`` current, or say what to serve instead:
        None serves the local copy (fresh, or stale when the upstream failed and the
        project serves from cache); an ``UpstreamManifest`` is served as it is (fetched
        now, stored behind the answer). Raises an ``AppError`` when nothing can be served."""

    async def blob(
        self, repository: str, digest: str, *, stream: bool
    ) -> UpstreamBlob | BlobInfo | None:
        """For a blob a proxy cache project does not hold: fetch it. ``stream``: return
        its bytes as they arrive; otherwise wait until it is stored and return None (the
        caller serves it from the cache). A blob the project holds already is returned
        as the registry's ``stat_blob`` finds it (looked up once: the caller serves it
        without asking again). None also when there is nothing to do (not a proxy
        cache project)."""

    async def refuse_write(self, repository: str) -> None:
        """Raise ``DeniedError`` when the repository is in a proxy cache project."""

"""This registry as one side of a copy: the adapter interface over ``RegistryService``.

Replication copies with ``remotes/copy.py`` between two adapters; the local side is this
one, so what a pull-based policy brings in is written through the same service as a
``/v2/`` push (quotas, immutability, the audit log and every other hook apply), and what a
push-based policy sends is read as a pull reads it.

The bandwidth limit (``speed``, KB/s per task) is applied here, on the bytes this side
reads (push) or writes (pull), so it holds whatever the remote's kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar

from dockyard.audit.events import Actor
from dockyard.errors import (
    AlreadyExistsError,
    BlobUnknownError,
    ManifestUnknownError,
    NameUnknownError,
    NotFoundError,
)
from dockyard.iam.users import BUILTIN_ADMIN_ID
from dockyard.projects import repository as projects_repo
from dockyard.projects.service import create_project
from dockyard.registry.service import RegistryService
from dockyard.remotes.adapter import (
    BlobSource,
    BlobStream,
    KindInfo,
    Manifest,
    ManifestRef,
    Referrers,
)

REPLICATION_ACTOR = Actor("replication", "-")
"""Who the audit log says made the changes a pull-based policy writes."""


TICK_SECONDS = 1.0


class Throttle:
    """At most ``rate`` bytes a second on average; ``tick`` (the task's checkpoint: a stop
    asked for ends the copy there) is awaited about once a second while bytes flow."""

    def __init__(self, rate: int | None, tick: Callable[[], Awaitable[None]] | None = None) -> None:
        self.rate = rate if rate and rate > 0 else None
        self.tick = tick
        self._start = time.monotonic()
        self._last_tick = self._start
        self._sent = 0

    async def passed(self, size: int) -> None:
        """Count ``size`` bytes; wait until they are within the rate, ticking meanwhile."""
        self._sent += size
        while True:
            now = time.monotonic()
            if self.tick is not None and now - self._last_tick >= TICK_SECONDS:
                self._last_tick = now
                await self.tick()
            if self.rate is None:
                return
            ahead = self._sent / self.rate - (now - self._start)
            if ahead <= 0:
                return
            await asyncio.sleep(min(ahead, TICK_SECONDS))

    async def wrap(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            await self.passed(len(chunk))
            yield chunk


class LocalAdapter:
    """This registry, as replication reads and writes it."""

    info: ClassVar[KindInfo] = KindInfo(
        kind="local",
        description="this registry",
        filters=(),
        triggers=(),
        copy_by_chunk=False,
        lists_namespaces=False,
    )

    def __init__(
        self,
        registry: RegistryService,
        throttle: Throttle | None = None,
        actor: Actor = REPLICATION_ACTOR,
    ) -> None:
        self.registry = registry
        self.throttle = throttle or Throttle(None)
        self.actor = actor

    async def ping(self) -> None:
        return None

    async def list_namespaces(self) -> list[str]:
        return sorted({name.split("/", 1)[0] for name in await self.list_repositories()})

    async def list_repositories(self, namespace: str | None = None) -> list[str]:
        names = await self.registry.catalog(None, None)
        if namespace is None:
            return names
        return [name for name in names if name.startswith(namespace + "/")]

    async def list_tags(self, repository: str) -> list[str]:
        return await self.registry.list_tags(repository, None, None)

    async def head_manifest(self, repository: str, reference: str) -> ManifestRef | None:
        try:
            found = await self.registry.get_manifest(repository, reference)
        except (ManifestUnknownError, NameUnknownError):
            return None
        return ManifestRef(found.digest, found.media_type, len(found.body))

    async def get_manifest(self, repository: str, reference: str) -> Manifest:
        found = await self.registry.get_manifest(repository, reference)
        return Manifest(found.digest, found.media_type, found.body)

    async def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> str:
        pushed = await self.registry.put_manifest(
            repository, reference, manifest.body, manifest.media_type, self.actor
        )
        return pushed.digest

    async def delete_manifest(self, repository: str, digest: str) -> None:
        await self.registry.delete_manifest(repository, digest, self.actor)

    async def delete_tag(self, repository: str, tag: str) -> None:
        await self.registry.delete_manifest(repository, tag, self.actor)

    async def blob_exists(self, repository: str, digest: str) -> int | None:
        try:
            return (await self.registry.stat_blob(repository, digest)).size
        except (BlobUnknownError, NameUnknownError):
            return None

    async def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        found = await self.registry.mount_blob(repository, digest, from_repository, self.actor)
        return found is not None

    @contextlib.asynccontextmanager
    async def open_blob(
        self, repository: str, digest: str, offset: int = 0
    ) -> AsyncIterator[BlobStream]:
        blob = await self.registry.stat_blob(repository, digest)
        chunks = await self.registry.read_blob(blob, offset)
        yield BlobStream(blob.size, offset, self.throttle.wrap(chunks))

    async def push_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        source: BlobSource,
        *,
        chunk_size: int | None = None,
    ) -> None:
        del chunk_size  # a local write is one stream
        await self.registry.upload_monolithic(
            repository, digest, self.throttle.wrap(source(0)), size, self.actor
        )

    async def list_referrers(self, repository: str, digest: str) -> Referrers:
        """The artifacts whose ``subject`` is ``digest`` (this registry has the API)."""
        try:
            found = await self.registry.referrers(repository, digest, None)
        except NameUnknownError:
            found = []
        return Referrers(found, api=True)

    async def ensure_namespace(self, namespace: str) -> None:
        """A pull-based policy's project is made when missing (private, owned by the
        administrator), as Harbor makes the destination's project."""
        async with self.registry.db.write() as session:
            if await projects_repo.find_project_by_name(session, namespace) is not None:
                return
            owner = await projects_repo.first_admin_id(session) or BUILTIN_ADMIN_ID
            with contextlib.suppress(AlreadyExistsError):
                await create_project(session, namespace, owner_id=owner, public=False)

    async def aclose(self) -> None:
        return None


__all__ = ["REPLICATION_ACTOR", "LocalAdapter", "NotFoundError", "Throttle"]

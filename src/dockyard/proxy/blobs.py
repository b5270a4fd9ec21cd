"""Filling the cache with blobs from the upstream, through the fill engine (``fill.py``).

``ProxyBlobs.open`` is the one boundary the cache calls: it joins the fill of the blob
already running in this process or starts one (one upstream GET per blob however many
clients ask), and links the blob into the repository once the engine has stored it
verified (its row, its link, the quota's charge, as an upload's completion does). The
opens of one blob for one repository while its fill runs (the client's GET and the
manifest's store behind it, many clients) share one ``Fill`` and so one link: the link
is a write transaction of half a dozen statements, made once instead of per open.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

from dockyard.audit.events import Actor
from dockyard.proxy.fill import BlobFills, Fill
from dockyard.registry.service import RegistryService
from dockyard.remotes.adapter import Adapter


class ProxyBlobs:
    """The blob fills of one process, linked into the repositories that asked."""

    def __init__(self, registry: RegistryService, fills: BlobFills) -> None:
        self.registry = registry
        self.fills = fills
        self._linking: dict[tuple[str, str], asyncio.Task[Fill]] = {}
        """(repository, digest) -> the open of the fill to link there, while it is due."""

    async def close(self) -> None:
        opening = list(self._linking.values())
        self._linking.clear()
        for task in opening:
            task.cancel()
        await asyncio.gather(*opening, return_exceptions=True)
        await self.fills.close()

    async def open(
        self,
        adapter: Adapter,
        repository: str,
        upstream_repository: str,
        digest: str,
        *,
        kib_per_second: int,
        actor: Actor,
        size: int | None = None,
    ) -> Fill:
        """The fill of ``digest`` (normalised) for ``repository`` (``BlobFills.open``)."""
        key = (repository, digest)
        opening = self._linking.get(key)
        if opening is not None and opening.done() and _failed(opening):
            opening = None  # a failed fill: the next open fetches again
        if opening is None:
            # A task of its own: callers come and go (a client disconnects), the open
            # they share does not stop with them.
            opening = asyncio.get_running_loop().create_task(
                self._open(
                    adapter, repository, upstream_repository, digest, kib_per_second, actor, size
                ),
                name=f"dockyard-proxy-open-{digest[7:19]}",
            )
            self._linking[key] = opening
            opening.add_done_callback(lambda task: self._forget_when_settled(key, task))
        return await asyncio.shield(opening)

    def _forget_when_settled(self, key: tuple[str, str], task: asyncio.Task[Fill]) -> None:
        def forget() -> None:
            if self._linking.get(key) is task:
                del self._linking[key]

        if _failed(task):
            forget()
        else:
            task.result().when_settled(forget)

    async def _open(
        self,
        adapter: Adapter,
        repository: str,
        upstream_repository: str,
        digest: str,
        kib_per_second: int,
        actor: Actor,
        size: int | None,
    ) -> Fill:
        async def fetch() -> tuple[int | None, AsyncIterator[bytes]]:
            stack = AsyncExitStack()
            try:
                stream = await stack.enter_async_context(
                    adapter.open_blob(upstream_repository, digest)
                )
            except BaseException:
                await stack.aclose()
                raise

            return (stream.size if stream.size >= 0 else None), _Body(stream.chunks, stack)

        async def link(stored: str, stored_size: int) -> None:
            await self.registry.link_stored_blob(repository, stored, stored_size, actor)

        return await self.fills.open(
            digest,
            fetch,
            size=size,
            limit_bps=kib_per_second * 1024.0 if kib_per_second > 0 else None,
            on_stored=link,
        )


def _failed(task: asyncio.Task[Fill]) -> bool:
    """Whether the (finished) open raised, or opened a fill that has failed."""
    return task.cancelled() or task.exception() is not None or task.result().failed


class _Body:
    """The upstream's body: its chunks, and ``aclose`` releasing the response (its
    ``stack``) whether or not it was read. A generator would not do: one never iterated
    runs none of its code on ``aclose`` (fill.py's contract for ``fetch``)."""

    def __init__(self, chunks: AsyncIterator[bytes], stack: AsyncExitStack) -> None:
        self._chunks = chunks
        self._stack = stack

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        return await anext(self._chunks)

    async def aclose(self) -> None:
        closer = getattr(self._chunks, "aclose", None)
        try:
            if closer is not None:
                await closer()
        finally:
            await self._stack.aclose()

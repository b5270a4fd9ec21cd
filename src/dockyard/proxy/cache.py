"""Pull-through for proxy cache projects: the registry's ``PullThrough`` seam.

A repository ``<project>/<path>`` of a proxy cache project mirrors ``<path>`` on the
project's registry endpoint (Docker Hub adds ``library/`` to a single name, in the
adapter). What a pull does (``docs/proxy-cache.md``):

* a **digest** already cached is served without asking the upstream (a digest names its
  bytes forever); one not cached is fetched by digest, checked, stored, then served;
* a **tag** is checked with one ``HEAD`` of the upstream manifest per pull: the same
  digest as the cached tag means nothing more is fetched; another digest is fetched by
  digest (so a tag moving meanwhile cannot mix two images), stored, and the tag moved;
* what is stored goes through ``RegistryService.put_manifest`` and ``upload_monolithic``
  as a push would (quota, audit, webhooks); a manifest is stored once its blobs are (an
  index once its children are: children are fetched **eagerly**, each platform with its
  blobs, so the whole index can be served when the upstream is gone);
* when the upstream fails (unreachable, too slow, 429, 5xx, a wrong answer, or 404) and
  the reference is cached, the cached copy is served, with a warning in the log and
  ``dockyard_proxy_cache_stale_served_total``; ``proxy_cache_local_on_not_found: "false"``
  fails the pull instead (Harbor's behaviour). Nothing cached and the upstream failing:
  ``503 UNAVAILABLE`` saying why (``404 MANIFEST_UNKNOWN`` when the upstream has no such
  manifest);
* bytes the upstream sends are verified before they are visible: a wrong digest, a cut
  stream, a manifest over 4 MiB or a redirect loop fails the pull and stores nothing.

Pushes into a proxy cache project are refused with ``403 DENIED`` (Harbor's answer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

import httpx
from prometheus_client import Counter

from dockyard.audit.events import Actor
from dockyard.db.base import utcnow
from dockyard.db.engine import Database
from dockyard.errors import (
    AppError,
    BlobUnknownError,
    DeniedError,
    DigestInvalidError,
    ManifestInvalidError,
    ManifestUnknownError,
    ServiceUnavailableError,
)
from dockyard.http.egress import EgressPolicy
from dockyard.oci.digest import Digest, is_digest
from dockyard.oci.manifest import MAX_MANIFEST_BYTES, ParsedManifest, parse_manifest
from dockyard.oci.names import split_repository
from dockyard.projects import repository as projects
from dockyard.projects.service import PROXY_SERVE_STALE, PROXY_SPEED
from dockyard.proxy import blobs
from dockyard.proxy import repository as proxy_repo
from dockyard.proxy.fill import BlobFills
from dockyard.quota import service as quotas
from dockyard.registry import repository as registry_repo
from dockyard.registry.pull_through import UpstreamBlob, UpstreamManifest
from dockyard.registry.service import BlobInfo, RegistryService
from dockyard.remotes import service as remotes
from dockyard.remotes.adapter import Adapter, Manifest
from dockyard.remotes.client import Endpoint, RemoteError, RemoteNotFound, RemoteUnreachable
from dockyard.remotes.kinds import open_adapter
from dockyard.settings import Settings

log = logging.getLogger("dockyard.proxy")

PROXY_ACTOR = Actor("proxy-cache", "-")
"""Who stores what a pull fetched (audit log, webhooks)."""
LOOKUP_SECONDS = 2.0
"""How long a project's proxy settings are remembered (a change applies within this)."""
LOOKUPS_KEPT = 4096
"""Projects whose lookup is remembered at once (the least recently asked go first)."""
MAX_INDEX_CHILDREN = 64
"""Children of one index fetched at most (a hostile upstream cannot make a pull endless)."""
BLOB_FETCHES = 4
"""Blobs of one manifest fetched at once."""

STALE_SERVED = Counter(
    "dockyard_proxy_cache_stale_served",
    "Pulls of a proxy cache project served from the cache because the upstream failed",
    ["reason"],
    registry=None,
)


class UpstreamError(ServiceUnavailableError):
    """The upstream of a proxy cache project failed and nothing cached can stand in."""


class WrongBytesError(Exception):
    """The upstream answered something that is not what was asked for."""


@dataclass(frozen=True, slots=True)
class ProxyProject:
    name: str
    project_id: int
    kind: str
    endpoint: Endpoint
    kib_per_second: int
    serve_stale: bool


class PullThroughCache:
    """``registry.pull_through``: see the module."""

    def __init__(
        self, settings: Settings, db: Database, registry: RegistryService, fills: BlobFills
    ) -> None:
        self.db = db
        self.registry = registry
        self.egress = EgressPolicy.from_settings(settings)
        self.timeout = settings.outbound_timeout_seconds
        self.blobs = blobs.ProxyBlobs(registry, fills)
        self._projects: OrderedDict[str, tuple[ProxyProject | None, float]] = OrderedDict()
        self._adapters: dict[tuple[str, Endpoint], Adapter] = {}
        self._stores: dict[tuple[str, str, str | None], asyncio.Task[None]] = {}
        self._pending: dict[tuple[str, str], Manifest] = {}
        """Manifests being stored behind an answer: a pull by their digest meanwhile (a
        client's next request after the tag) is answered without asking the upstream."""

    async def aclose(self) -> None:
        stores, self._stores = list(self._stores.values()), {}
        for task in stores:
            task.cancel()
        await asyncio.gather(*stores, return_exceptions=True)
        await self.blobs.close()
        adapters, self._adapters = list(self._adapters.values()), {}
        for adapter in adapters:
            await adapter.aclose()

    async def settled(self) -> None:
        """Wait until the manifests being stored behind answers are (for tests)."""
        while self._stores:
            await asyncio.gather(*list(self._stores.values()), return_exceptions=True)

    # --- which project ------------------------------------------------------------------

    async def _proxy_of(self, repository: str) -> ProxyProject | None:
        name, _ = split_repository(repository)
        now = time.monotonic()
        kept = self._projects.get(name)
        if kept is not None and kept[1] > now:
            return kept[0]
        # Asked by every pull and push of every project: one indexed statement for an
        # ordinary project, remembered for LOOKUP_SECONDS.
        async with self.db.read_connection() as conn:
            proxied = await proxy_repo.proxied_endpoint(conn, name)
        found = None if proxied is None else await self._settings_of(name, *proxied)
        self._projects[name] = (found, now + LOOKUP_SECONDS)
        self._projects.move_to_end(name)
        while len(self._projects) > LOOKUPS_KEPT:
            self._projects.popitem(last=False)
        return found

    async def _settings_of(self, name: str, project_id: int, registry_id: int) -> ProxyProject:
        async with self.db.read() as session:
            metadata = await projects.project_metadata(session, project_id)
            try:
                kind, endpoint = await remotes.open_endpoint(session, registry_id)
            except AppError:
                kind, endpoint = "", Endpoint("")  # the endpoint is gone
        speed = metadata.get(PROXY_SPEED, "-1")
        return ProxyProject(
            name,
            project_id,
            kind,
            endpoint,
            int(speed) if speed.lstrip("-").isdigit() else -1,
            metadata.get(PROXY_SERVE_STALE, "true") != "false",
        )

    def _adapter(self, proxy: ProxyProject) -> Adapter:
        if not proxy.kind:
            raise UpstreamError(f"proxy cache project {proxy.name}: its registry endpoint is gone")
        key = (proxy.kind, proxy.endpoint)
        adapter = self._adapters.get(key)
        if adapter is None:
            try:
                adapter = open_adapter(
                    proxy.kind, proxy.endpoint, self.egress, timeout=self.timeout, retries=1
                )
            except RemoteError as exc:
                raise UpstreamError(f"proxy cache project {proxy.name}: {exc}") from None
            self._adapters[key] = adapter
        return adapter

    async def refuse_write(self, repository: str) -> None:
        if await self._proxy_of(repository) is not None:
            project, _ = split_repository(repository)
            raise DeniedError(
                f"can not push artifact to a proxy project: {project} is a proxy cache"
            )

    # --- manifests ----------------------------------------------------------------------

    async def _cached(self, repository: str, reference: str) -> str | None:
        async with self.db.read_connection() as conn:
            if is_digest(reference):
                found = await registry_repo.find_manifest_by_digest(conn, repository, reference)
            else:
                found = await registry_repo.find_manifest_by_tag(conn, repository, reference)
        return found[0] if found is not None else None

    async def manifest(self, repository: str, reference: str) -> UpstreamManifest | None:
        proxy = await self._proxy_of(repository)
        if proxy is None:
            return None
        _, upstream_repository = split_repository(repository)
        by_digest = is_digest(reference)
        if by_digest:
            try:
                reference = str(Digest.parse(reference))
            except DigestInvalidError:
                return None  # the registry refuses it as it refuses any such reference
        cached = await self._cached(repository, reference)
        if by_digest and cached is not None:
            return None  # immutable: no upstream call
        pending = self._pending.get((repository, reference)) if by_digest else None
        if pending is not None:
            return UpstreamManifest(pending.digest, _checked(pending).media_type, pending.body)
        adapter = self._adapter(proxy)
        where = f"{repository}@{reference}" if by_digest else f"{repository}:{reference}"
        try:
            async with asyncio.timeout(self.timeout * 3):
                if by_digest:
                    wanted: str | None = reference
                else:
                    head = await adapter.head_manifest(upstream_repository, reference)
                    wanted = head.digest if head is not None else None
                if wanted is not None and wanted == cached:
                    return None  # fresh
                if wanted is None:
                    raise RemoteNotFound(f"{upstream_repository}:{reference}: no such manifest")
                if not by_digest and await self._cached(repository, wanted) is not None:
                    await self._move_tag(repository, reference, wanted)
                    return None
                fetched = await adapter.get_manifest(upstream_repository, wanted)
                parsed = _checked(fetched)
        except RemoteNotFound as exc:
            if cached is not None and proxy.serve_stale:
                self._stale(where, "not_found", str(exc))
                return None
            raise ManifestUnknownError(
                f"manifest {reference} is not in {upstream_repository} upstream "
                f"(proxy cache project {proxy.name})"
            ) from None
        except (RemoteError, httpx.HTTPError, TimeoutError, WrongBytesError) as exc:
            message = _describe(exc)
            if cached is not None and proxy.serve_stale:
                self._stale(where, _reason(exc), message)
                return None
            raise UpstreamError(
                f"{where} cannot be pulled through proxy cache project {proxy.name}: {message}"
                + ("" if cached is None else " (serving the cached copy is turned off)")
            ) from None
        self._store_later(proxy, repository, fetched, None if by_digest else reference)
        return UpstreamManifest(fetched.digest, parsed.media_type, fetched.body)

    def _stale(self, where: str, reason: str, message: str) -> None:
        log.warning("proxy cache: serving the cached %s: the upstream failed: %s", where, message)
        STALE_SERVED.labels(reason).inc()

    async def _move_tag(self, repository: str, tag: str, digest: str) -> None:
        """Point ``tag`` at the stored manifest ``digest`` (a tag moved upstream)."""
        stored = await self.registry.get_manifest(repository, digest)
        await self.registry.put_manifest(
            repository, tag, stored.body, stored.media_type, PROXY_ACTOR
        )

    def _store_later(
        self, proxy: ProxyProject, repository: str, manifest: Manifest, tag: str | None
    ) -> None:
        """Store ``manifest`` (and point ``tag`` at it) behind the answer, once its blobs
        are: the fills the client's blob GETs start are the ones this joins."""
        key = (repository, manifest.digest, tag)
        if key in self._stores:
            return
        self._pending[(repository, manifest.digest)] = manifest

        async def store() -> None:
            try:
                await self._store(proxy, repository, manifest, tag, 0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "proxy cache: %s@%s was served but not stored: %s",
                    repository,
                    manifest.digest,
                    _describe(exc),
                )
            finally:
                self._stores.pop(key, None)
                if not any(k[:2] == key[:2] for k in self._stores):
                    self._pending.pop(key[:2], None)

        self._stores[key] = asyncio.get_running_loop().create_task(
            store(), name=f"dockyard-proxy-store-{manifest.digest[7:19]}"
        )

    async def _store(
        self,
        proxy: ProxyProject,
        repository: str,
        manifest: Manifest,
        tag: str | None,
        depth: int,
    ) -> None:
        """Store a fetched manifest: its children (an index's, eagerly) and blobs first."""
        parsed = _checked(manifest)
        adapter = self._adapter(proxy)
        _, upstream_repository = split_repository(repository)
        if parsed.manifests:
            if depth > 0:
                raise WrongBytesError("an index lists another index; not proxied")
            if len(parsed.manifests) > MAX_INDEX_CHILDREN:
                raise WrongBytesError(
                    f"the index lists {len(parsed.manifests)} manifests, over {MAX_INDEX_CHILDREN}"
                )
            for child in parsed.manifests:
                digest = str(child.digest)
                if await self._cached(repository, digest) is None:
                    fetched = await adapter.get_manifest(upstream_repository, digest)
                    await self._store(proxy, repository, fetched, None, depth + 1)
        gate = asyncio.Semaphore(BLOB_FETCHES)

        async def one(digest: str, size: int) -> None:
            async with gate:
                if await self._held_blob(repository, digest) is not None:
                    return
                fill = await self.blobs.open(
                    adapter,
                    repository,
                    upstream_repository,
                    digest,
                    kib_per_second=proxy.kib_per_second,
                    actor=PROXY_ACTOR,
                    size=size,
                )
                await fill.stored()

        try:
            async with asyncio.TaskGroup() as group:
                for blob in parsed.required_blobs:
                    group.create_task(one(str(blob.digest), blob.size))
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None  # the first failure says what went wrong
        await self.registry.put_manifest(
            repository, tag or manifest.digest, manifest.body, parsed.media_type, PROXY_ACTOR
        )
        async with self.db.write() as session:
            await proxy_repo.mark_pulled(session, repository, manifest.digest, tag, utcnow())

    # --- blobs --------------------------------------------------------------------------

    async def blob(
        self, repository: str, digest: str, *, stream: bool
    ) -> UpstreamBlob | BlobInfo | None:
        proxy = await self._proxy_of(repository)
        if proxy is None:
            return None
        try:
            digest = str(Digest.parse(digest))
        except DigestInvalidError:
            return None  # refused by the registry as any such digest
        held = await self._held_blob(repository, digest)
        if held is not None:
            return held  # a cache hit: served as found, not looked up again
        _, upstream_repository = split_repository(repository)
        try:
            fill = await self.blobs.open(
                self._adapter(proxy),
                repository,
                upstream_repository,
                digest,
                kib_per_second=proxy.kib_per_second,
                actor=PROXY_ACTOR,
            )
            size = await fill.ready()
            if not fill.fetched:
                # Stored already (another project, or a fill that just ended): it is linked
                # here once stored() returns; a refused link (the quota) raises there,
                # rather than serving bytes the project may not hold.
                await fill.stored()
            elif size is not None:
                await self._check_quota(proxy, size)
            if stream:
                return UpstreamBlob(digest, size, fill.reader())
            await fill.stored()
        except RemoteNotFound as exc:
            raise BlobUnknownError(
                f"blob {digest} is not in {repository} nor upstream: {exc}"
            ) from None
        except (RemoteError, httpx.HTTPError, TimeoutError) as exc:
            raise UpstreamError(
                f"blob {digest} cannot be pulled through proxy cache project {proxy.name}: "
                f"{_describe(exc)}"
            ) from None
        return None

    async def _check_quota(self, proxy: ProxyProject, size: int) -> None:
        """Refuse a blob the project's quota has no room for, before it is streamed (the
        link made once it is stored is charged as a push is; this says it up front)."""
        async with self.db.read() as session:
            await quotas.check_room(session, proxy.project_id, proxy.name, size)

    async def _held_blob(self, repository: str, digest: str) -> BlobInfo | None:
        try:
            return await self.registry.stat_blob(repository, digest)
        except BlobUnknownError:
            return None


def _checked(manifest: Manifest) -> ParsedManifest:
    """A fetched manifest, parsed, or ``WrongBytesError``: too big, invalid, or not the
    digest it was fetched by (the adapter checks that too; a cache never trusts)."""
    if len(manifest.body) > MAX_MANIFEST_BYTES:
        raise WrongBytesError(
            f"the manifest {manifest.digest} is {len(manifest.body)} bytes, over "
            f"the {MAX_MANIFEST_BYTES} bytes a manifest may have"
        )
    try:
        parsed = parse_manifest(manifest.body, manifest.media_type or None)
    except (ManifestInvalidError, DigestInvalidError) as exc:
        raise WrongBytesError(f"the upstream's manifest is invalid: {exc.message}") from None
    if str(parsed.digest) != manifest.digest:
        raise WrongBytesError(f"the manifest's bytes do not match {manifest.digest}")
    return parsed


def _reason(exc: BaseException) -> str:
    """The metric's label for why the upstream failed: from the error's type, and for an
    answer the remote gave, from its HTTP status."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, WrongBytesError):
        return "wrong_bytes"
    if isinstance(exc, RemoteUnreachable):
        return "unreachable"
    status = exc.status if isinstance(exc, RemoteError) else None
    if status == 429:
        return "rate_limited"
    if status is not None and status >= 500:
        return "server_error"
    return "error"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the upstream did not answer in time"
    if isinstance(exc, httpx.TooManyRedirects):
        return "the upstream redirected too many times"
    return str(exc) or type(exc).__name__

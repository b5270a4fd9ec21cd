"""The OCI distribution API (``/v2/``) spoken to a remote: what every kind shares.

``DistributionAdapter`` implements ``adapter.Adapter`` over ``client.RemoteClient``;
the kinds subclass it for what differs (Harbor's API for projects and deletes, Docker
Hub's names). Scopes follow the Docker token protocol (``repository:<name>:pull,push``);
the client fetches and caches a token per scope when the remote asks for one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from dockyard.errors import DigestInvalidError
from dockyard.oci.digest import Digest, is_digest
from dockyard.oci.mediatypes import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    base_media_type,
)
from dockyard.remotes.adapter import (
    FILTER_NAME,
    FILTER_TAG,
    TRIGGER_MANUAL,
    TRIGGER_SCHEDULED,
    BlobSource,
    BlobStream,
    FilterSpec,
    KindInfo,
    Manifest,
    ManifestRef,
    Referrers,
    fallback_tag,
)
from dockyard.remotes.client import (
    MAX_SMALL_BODY,
    RemoteAuthError,
    RemoteClient,
    RemoteNotFound,
    RemoteProtocolError,
    RemoteUnreachable,
    RemoteUnsupported,
    aiter_body,
    decode_json,
    discard,
    read_limited,
)

MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))
CATALOG_PAGE = 1000
MAX_PAGES = 10_000
"""Pages of a listing followed at most (10 million names): a remote's ``Link`` loop ends."""
MAX_RESUMES = 5
"""Times a chunked upload is resumed after a failed piece before the copy fails."""
DEFAULT_CHUNK = 16 * 1024 * 1024


async def fail(response: httpx.Response, what: str) -> RemoteProtocolError:
    """The error for an answer ``what`` did not expect (the body is read and closed)."""
    try:
        head = (await read_limited(response, 64 * 1024))[:300]
    except (RemoteProtocolError, RemoteUnreachable, httpx.StreamError):
        head = b""  # closed already (a HEAD, or an answer the caller let go)
    text = head.decode("utf-8", "replace").strip()
    status = response.status_code
    message = f"{what}: the remote answered {status}" + (f": {text}" if text else "")
    if status in (401, 403):
        raise RemoteAuthError(message, status=status)
    if status == 404:
        raise RemoteNotFound(message, status=status)
    if status in (405, 501) or "UNSUPPORTED" in text:
        raise RemoteUnsupported(message, status=status)
    return RemoteProtocolError(message, status=status)


def _index_descriptors(body: object, where: str) -> list[dict[str, Any]]:
    """The ``manifests`` of an image index, each a descriptor with a digest."""
    found = body.get("manifests") if isinstance(body, dict) else None
    if found is None:
        return []
    if not isinstance(found, list) or not all(
        isinstance(d, dict) and isinstance(d.get("digest"), str) and is_digest(d["digest"])
        for d in found
    ):
        raise RemoteProtocolError(f"{where}: the index lists descriptors without digests")
    return found


def _next_link(response: httpx.Response) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header, if any."""
    for part in response.headers.get_list("link"):
        for link in part.split(","):
            target, _, params = link.partition(";")
            if 'rel="next"' in params.replace(" ", "") or "rel=next" in params.replace(" ", ""):
                return target.strip().strip("<>")
    return None


class DistributionAdapter:
    """A registry that speaks the distribution API; the base of every kind."""

    info: ClassVar[KindInfo] = KindInfo(
        kind="docker-registry",
        description="Any registry speaking the OCI distribution API (Docker Registry 2.0).",
        filters=(FilterSpec(FILTER_NAME, "input"), FilterSpec(FILTER_TAG, "input")),
        triggers=(TRIGGER_MANUAL, TRIGGER_SCHEDULED),
        copy_by_chunk=True,
        lists_namespaces=False,
    )

    def __init__(self, client: RemoteClient) -> None:
        self.client = client

    async def aclose(self) -> None:
        await self.client.aclose()

    def repository(self, name: str) -> str:
        """The name the remote knows ``name`` by (Docker Hub adds ``library/``)."""
        return name

    def _scope(self, repository: str, actions: str) -> str:
        """The token scope for ``actions`` on a repository (Docker's token protocol)."""
        return f"repository:{self.repository(repository)}:{actions}"

    def _path(self, repository: str, *rest: str) -> str:
        return "/v2/" + quote(self.repository(repository), safe="/") + "/" + "/".join(rest)

    # --- reaching it ----------------------------------------------------------------------

    async def ping(self) -> None:
        response = await self.client.request("GET", "/v2/")
        if response.status_code == 200:
            await discard(response)
            return
        if response.status_code == 401:
            await discard(response)
            raise RemoteAuthError(f"{self.client.base}: the credentials were refused")
        raise await fail(response, f"{self.client.base}/v2/")

    # --- listing --------------------------------------------------------------------------

    async def list_namespaces(self) -> list[str]:
        raise RemoteUnsupported(f"a {self.info.kind} registry has no namespaces to list")

    async def _pages(self, path: str, key: str, scope: str, what: str) -> list[str]:
        names: list[str] = []
        target: str | None = path
        params: dict[str, str] | None = {"n": str(CATALOG_PAGE)}
        for _ in range(MAX_PAGES):
            if target is None:
                return names
            response = await self.client.request("GET", target, scope=scope, params=params)
            if response.status_code != 200:
                raise await fail(response, what)
            link = _next_link(response)
            body = decode_json(await read_limited(response), what)
            found = body.get(key) if isinstance(body, dict) else None
            if found is not None and not (
                isinstance(found, list) and all(isinstance(n, str) for n in found)
            ):
                raise RemoteProtocolError(f"{what}: {key} is not a list of names")
            names.extend(found or [])
            target = str(response.request.url.join(link)) if link else None
            params = None
        raise RemoteProtocolError(f"{what}: more than {MAX_PAGES} pages")

    async def list_repositories(self, namespace: str | None = None) -> list[str]:
        try:
            names = await self._pages(
                "/v2/_catalog", "repositories", "registry:catalog:*", "the catalog"
            )
        except (RemoteNotFound, RemoteAuthError, RemoteUnsupported) as exc:
            raise RemoteUnsupported(
                f"{self.client.base} does not list its repositories ({exc}); name them instead"
            ) from None
        if namespace:
            names = [n for n in names if n.startswith(namespace.rstrip("/") + "/")]
        return names

    async def list_tags(self, repository: str) -> list[str]:
        return await self._pages(
            self._path(repository, "tags", "list"),
            "tags",
            self._scope(repository, "pull"),
            repository,
        )

    # --- manifests ------------------------------------------------------------------------

    async def head_manifest(self, repository: str, reference: str) -> ManifestRef | None:
        response = await self.client.request(
            "HEAD",
            self._path(repository, "manifests", reference),
            scope=self._scope(repository, "pull"),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        await discard(response)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise await fail(response, f"{repository}:{reference}")
        digest = response.headers.get("docker-content-digest", "")
        if not digest and is_digest(reference):
            digest = reference
        if not digest:
            # A registry that does not say the digest on HEAD: read the manifest to know it.
            found = await self.get_manifest(repository, reference)
            return ManifestRef(found.digest, found.media_type, len(found.body))
        length = response.headers.get("content-length", "")
        return ManifestRef(
            digest,
            base_media_type(response.headers.get("content-type", "")),
            int(length) if length.isdigit() else -1,
        )

    async def get_manifest(self, repository: str, reference: str) -> Manifest:
        where = f"{repository}:{reference}"
        response = await self.client.request(
            "GET",
            self._path(repository, "manifests", reference),
            scope=self._scope(repository, "pull"),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        if response.status_code != 200:
            raise await fail(response, where)
        body = await read_limited(response, MAX_SMALL_BODY)
        media_type = base_media_type(response.headers.get("content-type", ""))
        if media_type in ("", "application/json", "text/plain", "application/octet-stream"):
            try:
                declared = json.loads(body).get("mediaType")
            except (ValueError, AttributeError):
                declared = None
            media_type = declared if isinstance(declared, str) else media_type
        actual = str(Digest.of(body))
        if is_digest(reference):
            try:
                wanted = Digest.parse(reference)
            except DigestInvalidError as exc:
                raise RemoteProtocolError(f"{where}: {exc.message}") from None
            if str(Digest.of(body, wanted.algorithm)) != str(wanted):
                raise RemoteProtocolError(f"{where}: the manifest's bytes do not match the digest")
            actual = str(wanted)
        return Manifest(actual, media_type, body)

    async def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> str:
        response = await self.client.request(
            "PUT",
            self._path(repository, "manifests", reference),
            scope=self._scope(repository, "pull,push"),
            headers={"Content-Type": manifest.media_type},
            content=manifest.body,
        )
        if response.status_code not in (200, 201, 202):
            raise await fail(response, f"push {repository}:{reference}")
        await discard(response)
        return response.headers.get("docker-content-digest") or manifest.digest

    async def delete_manifest(self, repository: str, digest: str) -> None:
        response = await self.client.request(
            "DELETE",
            self._path(repository, "manifests", digest),
            scope=self._scope(repository, "delete"),
        )
        if response.status_code not in (200, 202, 204):
            raise await fail(response, f"delete {repository}@{digest}")
        await discard(response)

    async def list_referrers(self, repository: str, digest: str) -> Referrers:
        """``GET /v2/<name>/referrers/<digest>``; a registry without the API answers 404
        (a registry with it never does, OCI 1.1), and then the fallback tag is read."""
        where = f"the referrers of {repository}@{digest}"
        response = await self.client.request(
            "GET",
            self._path(repository, "referrers", digest),
            scope=self._scope(repository, "pull"),
            headers={"Accept": OCI_INDEX},
        )
        if response.status_code == 200:
            body = decode_json(await read_limited(response, MAX_SMALL_BODY), where)
            return Referrers(_index_descriptors(body, where), api=True)
        if response.status_code not in (404, 405):
            raise await fail(response, where)
        await discard(response)
        try:
            index = await self.get_manifest(repository, fallback_tag(digest))
        except RemoteNotFound:
            return Referrers([], api=False)
        return Referrers(_index_descriptors(decode_json(index.body, where), where), api=False)

    async def delete_tag(self, repository: str, tag: str) -> None:
        """A tag alone, where the registry can (distribution 3 can; 2.x answers UNSUPPORTED,
        and deleting the manifest would take its other tags with it, so that is refused)."""
        response = await self.client.request(
            "DELETE",
            self._path(repository, "manifests", tag),
            scope=self._scope(repository, "delete"),
        )
        if response.status_code in (200, 202, 204):
            await discard(response)
            return
        error = await fail(response, f"delete {repository}:{tag}")
        if response.status_code == 400 and "DIGEST_INVALID" in str(error):
            # distribution 2.x reads the reference as a digest and finds it invalid.
            raise RemoteUnsupported(
                f"{self.client.base} deletes manifests by digest only, not a tag alone"
            )
        raise error

    # --- blobs ----------------------------------------------------------------------------

    async def blob_exists(self, repository: str, digest: str) -> int | None:
        response = await self.client.request(
            "HEAD", self._path(repository, "blobs", digest), scope=self._scope(repository, "pull")
        )
        await discard(response)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise await fail(response, f"{repository}@{digest}")
        length = response.headers.get("content-length", "")
        return int(length) if length.isdigit() else 0

    async def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        response = await self.client.request(
            "POST",
            self._path(repository, "blobs", "uploads/"),
            scope=f"{self._scope(repository, 'pull,push')} {self._scope(from_repository, 'pull')}",
            params={"mount": digest, "from": self.repository(from_repository)},
        )
        await discard(response)
        if response.status_code == 201:
            return True
        if response.status_code == 202:
            # Not mounted: the registry opened an upload instead; let it go.
            location = response.headers.get("location")
            if location:
                done = await self.client.request(
                    "DELETE",
                    self._upload_url(response, location),
                    scope=self._scope(repository, "pull,push"),
                )
                await discard(done)
            return False
        raise await fail(response, f"mount {digest} into {repository}")

    @asynccontextmanager
    async def open_blob(
        self, repository: str, digest: str, offset: int = 0
    ) -> AsyncIterator[BlobStream]:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = await self.client.request(
            "GET",
            self._path(repository, "blobs", digest),
            scope=self._scope(repository, "pull"),
            headers=headers,
        )
        try:
            if response.status_code not in (200, 206):
                raise await fail(response, f"{repository}@{digest}")
            start = 0
            size = -1
            content_range = response.headers.get("content-range", "")
            if response.status_code == 206 and "/" in content_range:
                span, _, total = content_range.removeprefix("bytes ").partition("/")
                start = int(span.partition("-")[0] or 0)
                size = int(total) if total.isdigit() else -1
            else:
                length = response.headers.get("content-length", "")
                size = int(length) if length.isdigit() else -1
            yield BlobStream(size, start, aiter_body(response))
        finally:
            await discard(response)

    def _upload_url(self, response: httpx.Response, location: str) -> str:
        return str(response.request.url.join(location))

    async def _start_upload(self, repository: str) -> str:
        response = await self.client.request(
            "POST",
            self._path(repository, "blobs", "uploads/"),
            scope=self._scope(repository, "pull,push"),
        )
        await discard(response)
        location = response.headers.get("location")
        if response.status_code != 202 or not location:
            raise await fail(response, f"start an upload to {repository}")
        return self._upload_url(response, location)

    async def push_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        source: BlobSource,
        *,
        chunk_size: int | None = None,
    ) -> None:
        location = await self._start_upload(repository)
        if chunk_size is None:
            response = await self.client.request(
                "PUT",
                location,
                scope=self._scope(repository, "pull,push"),
                params={"digest": digest},
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                content=source(0),
            )
            if response.status_code != 201:
                raise await fail(response, f"upload {digest} to {repository}")
            await discard(response)
            return
        await self._push_chunks(repository, digest, size, source, chunk_size, location)

    async def _push_chunks(
        self,
        repository: str,
        digest: str,
        size: int,
        source: BlobSource,
        chunk_size: int,
        location: str,
    ) -> None:
        offset = 0
        resumes = 0
        while offset < size:
            try:
                async for piece in _pieces(source(offset), chunk_size):
                    location = await self._patch(repository, location, offset, piece)
                    offset += len(piece)
            except (RemoteUnreachable, RemoteProtocolError, RemoteNotFound) as exc:
                # A piece cut short, or refused after a resume (the remote lost the upload).
                resumes += 1
                if resumes > MAX_RESUMES:
                    raise RemoteUnreachable(
                        f"upload of {digest} to {repository} failed {resumes} times: {exc}"
                    ) from None
                try:
                    offset, location = await self._upload_status(repository, location)
                except (RemoteNotFound, RemoteProtocolError):
                    # The remote lost the upload, or will not continue it (distribution 2.x
                    # keeps a cut piece's bytes and then refuses the upload's state): start
                    # a new one from the beginning.
                    offset, location = 0, await self._start_upload(repository)
                continue
            if offset < size:
                raise RemoteProtocolError(f"the source of {digest} ended at {offset} of {size}")
        response = await self.client.request(
            "PUT", location, scope=self._scope(repository, "pull,push"), params={"digest": digest}
        )
        if response.status_code != 201:
            raise await fail(response, f"finish the upload of {digest} to {repository}")
        await discard(response)

    async def _patch(self, repository: str, location: str, offset: int, piece: bytes) -> str:
        response = await self.client.request(
            "PATCH",
            location,
            scope=self._scope(repository, "pull,push"),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(piece) - 1}",
            },
            content=piece,
        )
        await discard(response)
        if response.status_code != 202:
            raise await fail(response, f"upload a piece at {offset} to {repository}")
        return self._upload_url(response, response.headers.get("location") or location)

    async def _upload_status(self, repository: str, location: str) -> tuple[int, str]:
        """Where the remote has the upload (``GET`` of its location: ``Range: 0-<last>``)."""
        response = await self.client.request(
            "GET", location, scope=self._scope(repository, "pull,push")
        )
        await discard(response)
        if response.status_code != 204:
            raise await fail(response, f"the state of an upload to {repository}")
        last = response.headers.get("range", "").partition("-")[2]
        offset = int(last) + 1 if last.isdigit() else 0
        return offset, self._upload_url(response, response.headers.get("location") or location)

    async def ensure_namespace(self, namespace: str) -> None:
        """Distribution registries have no namespaces to make: repositories appear on push."""


async def _pieces(stream: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """``stream`` regrouped into pieces of ``size`` bytes (the last may be shorter)."""
    buffer = bytearray()
    async for chunk in stream:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)

"""Pulling an image over the distribution API for the adapter face: manifest, then layers.

The registry and the ``Authorization`` come from the scan request (Harbor sends its external
URL and a robot's Basic credential). When the registry answers 401 with a ``Bearer``
challenge, the credential is exchanged for a token at the challenge's realm, as Docker
clients and Trivy do. An index (or Docker manifest list) is resolved to its ``linux/amd64``
image, else to its first image, as Trivy picks. Every host is checked against the egress
policy (``http/egress.py``) before each connection; bytes pulled are capped per scan, and
each blob's digest is checked as it streams.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx

from dockyard.http.egress import EgressPolicy, EgressRefused
from dockyard.http.outbound import OutboundError

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MAX_MANIFEST_BYTES = 4 << 20
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
_REPOSITORY = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class PullError(Exception):
    """The image could not be pulled; the message says why (shown in the scan's error)."""


@dataclass
class Budget:
    """Bytes a scan may still pull."""

    left: int
    stopped: bool = False

    def take(self, n: int) -> None:
        if self.stopped:
            raise PullError("the scan was stopped (over its time limit)")
        self.left -= n
        if self.left < 0:
            raise PullError("the image is larger than the bytes one scan may pull")


def valid_repository(name: str) -> bool:
    return len(name) <= 255 and _REPOSITORY.fullmatch(name) is not None


def valid_digest(digest: str) -> bool:
    return _DIGEST.fullmatch(digest) is not None


class RegistryPuller:
    """One scan's view of one repository on one registry."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        egress: EgressPolicy,
        registry_url: str,
        repository: str,
        authorization: str,
        budget: Budget,
    ) -> None:
        self.client = client
        self.egress = egress
        self.base = registry_url.rstrip("/")
        self.repository = repository
        self.authorization = authorization
        self.budget = budget
        self._token_tried = False

    async def _check(self, url: str) -> None:
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise PullError(f"not an http(s) URL: {url[:200]}")
        try:
            # An address literal is checked in full here; a name's addresses are checked
            # by the client's transport (CheckedTransport) as each connection is made, with
            # the addresses it dials, so the name is not looked up twice.
            self.egress.check_host(parsed.host)
        except EgressRefused as exc:
            raise PullError(str(exc)) from None

    async def _send(self, url: str, accept: str = "") -> httpx.Response:
        """GET with the credential, following redirects by hand (each hop checked; the
        credential is not sent to another origin)."""
        origin = httpx.URL(self.base)
        target = url
        for _ in range(5):
            await self._check(target)
            headers = {"Accept": accept} if accept else {}
            same = httpx.URL(target).copy_with(path="/", query=None) == origin.copy_with(
                path="/", query=None
            )
            if self.authorization and same:
                headers["Authorization"] = self.authorization
            request = self.client.build_request("GET", target, headers=headers)
            try:
                response = await self.client.send(request, stream=True)
            except OutboundError as exc:  # refused or unresolvable at connect time
                raise PullError(str(exc)) from None
            except httpx.HTTPError as exc:
                raise PullError(f"cannot reach the registry: {exc or type(exc).__name__}") from None
            if response.status_code in (301, 302, 303, 307, 308) and "location" in response.headers:
                await response.aclose()
                target = urljoin(target, response.headers["location"])
                continue
            if response.status_code == 401 and not self._token_tried:
                challenge = response.headers.get("www-authenticate", "")
                await response.aclose()
                if challenge.lower().startswith("bearer "):
                    self._token_tried = True
                    await self._exchange(challenge)
                    return await self._send(url, accept)
                raise PullError("the registry refused the credential (401)")
            return response
        raise PullError("too many redirects")

    async def _exchange(self, challenge: str) -> None:
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise PullError("the registry's Bearer challenge has no realm")
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        query.setdefault("scope", f"repository:{self.repository}:pull")
        url = f"{realm}{'&' if '?' in realm else '?'}{urlencode(query)}"
        await self._check(url)
        headers = {}
        if self.authorization.lower().startswith("basic "):
            headers["Authorization"] = self.authorization
        try:
            answer = await self.client.get(url, headers=headers)
        except OutboundError as exc:
            raise PullError(str(exc)) from None
        except httpx.HTTPError as exc:
            raise PullError(f"cannot reach the registry's token service: {exc}") from None
        if answer.status_code != 200:
            raise PullError(
                f"the registry's token service refused the credential ({answer.status_code})"
            )
        try:
            doc = answer.json()
        except ValueError:
            raise PullError(
                "the registry's token service answered something other than JSON"
            ) from None
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise PullError("the registry's token service gave no token")
        self.authorization = f"Bearer {token}"

    async def _read_small(self, response: httpx.Response, what: str) -> bytes:
        data = bytearray()
        try:
            async for chunk in response.aiter_raw():
                data += chunk
                self.budget.take(len(chunk))
                if len(data) > MAX_MANIFEST_BYTES:
                    raise PullError(f"the {what} is larger than {MAX_MANIFEST_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise PullError(f"the {what} could not be read: {exc}") from None
        finally:
            await response.aclose()
        return bytes(data)

    async def manifest(self, reference: str) -> tuple[str, dict[str, Any]]:
        """(media type, manifest) of ``reference``, resolving an index to one image."""
        for _ in range(2):  # an index, then the image it points to
            accept = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
            url = f"{self.base}/v2/{self.repository}/manifests/{reference}"
            response = await self._send(url, accept)
            if response.status_code != 200:
                await response.aclose()
                raise PullError(
                    f"the registry answered {response.status_code} for the manifest "
                    f"{self.repository}@{reference}"
                )
            data = await self._read_small(response, "manifest")
            if valid_digest(reference) and _digest_of(reference, data) != reference:
                raise PullError(f"the manifest does not match its digest {reference}")
            try:
                doc = json.loads(data)
            except ValueError:
                raise PullError("the manifest is not JSON") from None
            if not isinstance(doc, dict):
                raise PullError("the manifest is not a JSON object")
            media = doc.get("mediaType") or response.headers.get("content-type", "")
            if media in INDEX_TYPES or "manifests" in doc:
                reference = choose_platform(doc)
                continue
            if media not in MANIFEST_TYPES:
                raise PullError(f"not an image manifest ({str(media)[:100]})")
            return media, doc
        raise PullError("an index points to another index")

    async def blob(self, digest: str) -> AsyncIterator[bytes]:
        """The blob's bytes as they arrive; its digest is checked at the end."""
        if not valid_digest(digest):
            raise PullError(f"a layer has a malformed digest: {digest[:100]!r}")
        response = await self._send(f"{self.base}/v2/{self.repository}/blobs/{digest}")
        if response.status_code != 200:
            await response.aclose()
            raise PullError(f"the registry answered {response.status_code} for the blob {digest}")
        algorithm, _, expected = digest.partition(":")
        hasher = hashlib.new(algorithm)
        try:
            async for chunk in response.aiter_raw(1 << 20):
                self.budget.take(len(chunk))
                hasher.update(chunk)
                yield chunk
        except httpx.HTTPError as exc:
            raise PullError(f"the blob {digest} could not be read: {exc}") from None
        finally:
            await response.aclose()
        if hasher.hexdigest() != expected:
            raise PullError(f"the blob does not match its digest {digest}")


def _digest_of(reference: str, data: bytes) -> str:
    algorithm = reference.partition(":")[0]
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def choose_platform(index: dict[str, Any]) -> str:
    """The digest of the index's ``linux/amd64`` image, else of its first entry."""
    entries = index.get("manifests")
    if not isinstance(entries, list) or not entries:
        raise PullError("the index lists no manifests")
    images = [e for e in entries if isinstance(e, dict) and isinstance(e.get("digest"), str)]
    if not images:
        raise PullError("the index lists no manifests")
    for entry in images:
        platform = entry.get("platform")
        if isinstance(platform, dict) and (platform.get("os"), platform.get("architecture")) == (
            "linux",
            "amd64",
        ):
            chosen: str = entry["digest"]
            break
    else:
        chosen = images[0]["digest"]
    if not valid_digest(chosen):
        raise PullError(f"the index names a malformed digest: {chosen[:100]!r}")
    return chosen


def layer_digests(manifest: dict[str, Any]) -> list[str]:
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise PullError("the manifest has no layers list")
    digests: list[str] = []
    for layer in layers:
        if not isinstance(layer, dict) or not isinstance(layer.get("digest"), str):
            raise PullError("a layer of the manifest has no digest")
        digests.append(layer["digest"])
    return digests

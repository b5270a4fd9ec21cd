"""A small OCI distribution client for ``dockyard sign`` and ``dockyard verify``: resolve a
reference, read and write manifests and blobs, list referrers. Authenticates with HTTP Basic or
the Docker token flow (a ``WWW-Authenticate: Bearer`` challenge answered at its realm)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx

from dockyard.signatures.limits import MAX_ENVELOPE_BYTES

__all__ = ["Reference", "RegistryClient", "RegistryError", "parse_reference"]

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(Exception):
    """The registry refused or could not be reached; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Reference:
    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def docker_reference(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        if self.digest:
            return f"{self.docker_reference}@{self.digest}"
        return f"{self.docker_reference}:{self.tag}"


def parse_reference(text: str) -> Reference:
    """``REGISTRY/REPO@sha256:<hex>`` or ``REGISTRY/REPO:TAG``."""
    registry, slash, rest = text.partition("/")
    if not slash or not rest or not ("." in registry or ":" in registry or registry == "localhost"):
        raise RegistryError(
            f"{text!r} does not start with a registry host: write REGISTRY/REPO@DIGEST or "
            "REGISTRY/REPO:TAG (for example 127.0.0.1:5000/library/app:1.0)"
        )
    digest = tag = None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _DIGEST.fullmatch(digest):
            raise RegistryError(f"{digest!r} is not a sha256 digest (sha256:<64 hex digits>)")
    else:
        head, colon, maybe_tag = rest.rpartition(":")
        if colon and "/" not in maybe_tag:
            rest, tag = head, maybe_tag
        else:
            tag = "latest"
    if not rest or rest != rest.lower():
        raise RegistryError(f"repository {rest!r} must be lowercase and not empty")
    return Reference(registry, rest, tag, digest)


class RegistryClient:
    """One repository of one registry; ``plain_http`` for registries without TLS."""

    def __init__(
        self,
        reference: Reference,
        *,
        username: str | None = None,
        password: str | None = None,
        plain_http: bool = False,
        verify_tls: bool = True,
        timeout: float = 60.0,
    ) -> None:
        self.reference = reference
        scheme = "http" if plain_http else "https"
        self._base = f"{scheme}://{reference.registry}/v2/{reference.repository}"
        self._auth = (username, password) if username is not None else None
        # A signing client names itself, so a project with content trust on lets it read the
        # unsigned manifest it is about to sign (registry/routes.py, as Harbor does for cosign).
        self._client = httpx.Client(
            timeout=timeout,
            verify=verify_tls,
            follow_redirects=True,
            headers={"User-Agent": "dockyard-sign"},
        )
        self._token: str | None = None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- HTTP with authentication ------------------------------------------------------------

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        for attempt in range(2):
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            try:
                response = self._client.request(
                    method,
                    url,
                    headers=headers,
                    auth=self._auth if not self._token else None,  # type: ignore[arg-type]
                    **kwargs,
                )
            except httpx.HTTPError as exc:
                raise RegistryError(
                    f"cannot reach {self.reference.registry}: {exc}; check the address, and "
                    "use --plain-http for a registry without TLS"
                ) from None
            if response.status_code != 401 or attempt:
                return response
            challenge = response.headers.get("WWW-Authenticate", "")
            if not challenge.lower().startswith("bearer "):
                return response
            self._token = self._fetch_token(challenge)
        return response

    def _fetch_token(self, challenge: str) -> str:
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.pop("realm", None)
        if not realm:
            raise RegistryError("the registry's Bearer challenge names no realm")
        scope = f"repository:{self.reference.repository}:pull,push"
        query = {k: v for k, v in params.items() if k == "service"}
        query["scope"] = scope
        try:
            answer = self._client.get(realm, params=query, auth=self._auth)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise RegistryError(f"cannot reach the token service {realm}: {exc}") from None
        if answer.status_code != 200:
            raise RegistryError(
                f"the token service refused these credentials ({answer.status_code}): give "
                "--username and DOCKYARD_PASSWORD (or --password)"
            )
        document = answer.json()
        token = document.get("token") or document.get("access_token")
        if not isinstance(token, str):
            raise RegistryError("the token service answered without a token")
        return token

    def _fail(self, response: httpx.Response, doing: str) -> RegistryError:
        if response.status_code in (401, 403):
            hint = "give --username and DOCKYARD_PASSWORD (or --password) of an account that may"
            hint += " push to the repository" if "push" in doing or "upload" in doing else " pull"
        elif response.status_code == 404:
            hint = f"check that {self.reference} exists"
        else:
            hint = "see the registry's answer above"
        try:
            detail = response.json()["errors"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            detail = response.text[:200]
        return RegistryError(f"{doing}: {response.status_code} {detail}; {hint}")

    # --- operations ---------------------------------------------------------------------------

    def get_manifest(self, reference: str) -> tuple[bytes, str, str] | None:
        """(bytes, media type, digest) of a manifest by tag or digest; None when absent."""
        response = self._request(
            "GET", f"{self._base}/manifests/{reference}", headers={"Accept": MANIFEST_TYPES}
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, f"reading manifest {reference}")
        data = response.content
        if len(data) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"manifest {reference} is larger than {MAX_MANIFEST_BYTES} bytes")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if _DIGEST.fullmatch(reference) and digest != reference:
            raise RegistryError(f"the registry answered {reference} with bytes of {digest}")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        with contextlib.suppress(ValueError, AttributeError):
            media_type = json.loads(data).get("mediaType") or media_type
        return data, media_type, digest

    def put_manifest(self, reference: str, data: bytes, media_type: str) -> str:
        response = self._request(
            "PUT",
            f"{self._base}/manifests/{reference}",
            content=data,
            headers={"Content-Type": media_type},
        )
        if response.status_code != 201:
            raise self._fail(response, f"pushing manifest {reference}")
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def get_blob(self, digest: str, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> bytes:
        with self._client.stream(
            "GET", f"{self._base}/blobs/{digest}", headers=self._auth_header()
        ) as response:
            if response.status_code != 200:
                response.read()
                raise self._fail(response, f"reading blob {digest}")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise RegistryError(f"blob {digest} is larger than {max_bytes} bytes")
                chunks.append(chunk)
        data = b"".join(chunks)
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise RegistryError(f"blob {digest} does not match its digest")
        return data

    def _auth_header(self) -> dict[str, str]:
        if self._token:
            return {"Authorization": f"Bearer {self._token}"}
        if self._auth:
            pair = f"{self._auth[0]}:{self._auth[1] or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
        return {}

    def push_blob(self, data: bytes, media_type: str = "application/octet-stream") -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        head = self._request("HEAD", f"{self._base}/blobs/{digest}")
        if head.status_code == 200:
            return digest
        started = self._request("POST", f"{self._base}/blobs/uploads/")
        if started.status_code != 202:
            raise self._fail(started, "starting a blob upload (push)")
        location = started.headers.get("Location", "")
        url = location if location.startswith("http") else f"{self._origin()}{location}"
        separator = "&" if "?" in url else "?"
        done = self._request(
            "PUT",
            f"{url}{separator}digest={digest}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if done.status_code != 201:
            raise self._fail(done, "completing a blob upload (push)")
        return digest

    def _origin(self) -> str:
        return self._base.split("/v2/", 1)[0]

    def referrers(self, digest: str, artifact_type: str | None = None) -> list[dict[str, Any]]:
        params = {"artifactType": artifact_type} if artifact_type else {}
        response = self._request("GET", f"{self._base}/referrers/{digest}", params=params)
        if response.status_code == 404:
            return []
        if response.status_code != 200:
            raise self._fail(response, f"listing the referrers of {digest}")
        manifests = response.json().get("manifests", [])
        return [m for m in manifests if isinstance(m, dict)]

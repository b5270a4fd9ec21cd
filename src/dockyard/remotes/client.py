"""The HTTP client of one registry endpoint: pooled, egress-checked, retried, authenticated.

Webhooks send one small request and read a few KiB (``http/outbound.py``); talking to a
registry is many requests, some with gigabytes of body each way, so this client keeps
connections open (one ``httpx.AsyncClient`` per endpoint) and streams. It keeps the
promises of the outbound client that matter here:

- **egress policy**: connections go through ``outbound.CheckedBackend``, so a registry
  URL (and every redirect and token realm it names) is held to the ``egress_*``
  settings on the address actually connected to; environment proxies are never used;
- **no hang**: connecting, TLS and every read and write have the
  ``outbound_timeout_seconds`` deadline, so an endpoint that is down or stalls fails
  with a clear ``RemoteUnreachable`` instead of holding a worker;
- **retries with back-off** for requests whose body can be sent again (none, or bytes):
  a connection that fails, a 429 (``Retry-After`` honoured up to a bound) or a 502/503/504
  is tried again, ``retries`` times, waiting 0.25 s, 0.5 s, 1 s…

Authentication follows the registry: HTTP Basic when it asks for Basic, and the Docker
token flow when it asks for Bearer (``WWW-Authenticate: Bearer realm=…,service=…,scope=…``):
a token is fetched from the realm (with the endpoint's credentials, or anonymously) for
the scope, kept until shortly before it expires, and reused for every request of that
scope. ``oauth`` credentials are a bearer token sent as is; ``secret`` credentials are
Harbor's ``Harbor-Secret`` header.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import httpcore
import httpx

from dockyard.http.egress import EgressPolicy
from dockyard.http.outbound import (
    USER_AGENT,
    CheckedTransport,
    OutboundError,
    Resolver,
    unverified_context,
    verifying_context,
)

BASIC = "basic"
OAUTH = "oauth"
SECRET = "secret"  # noqa: S105 - a credential type's name
CREDENTIAL_TYPES = (BASIC, OAUTH, SECRET)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER = 30.0
TOKEN_MARGIN = 10.0
"""Seconds before a token's expiry when it is no longer used."""
DEFAULT_TOKEN_SECONDS = 60
MAX_SMALL_BODY = 4 * 1024 * 1024
"""The most of a JSON or manifest answer read into memory."""
DIRECT_BODY_MIN = 1024 * 1024
"""A body of at least this many bytes (``Content-Length``) is read past h11 (``aiter_body``)."""
DIRECT_READ_BYTES = 1024 * 1024
"""The most asked of the connection per read of such a body (asyncio hands over up to
256 KiB at a time, all the socket had)."""

_PARAM = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


class RemoteError(Exception):
    """A call to a remote registry failed; ``str()`` is safe to show and log. ``status``
    is the HTTP status the remote answered, when the failure is an answer."""

    def __init__(self, message: str = "", *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RemoteUnreachable(RemoteError):
    """No answer: refused by the egress policy, DNS, connection, TLS or a timeout."""


class RemoteAuthError(RemoteError):
    """The remote refused the credentials (or wants some and none are configured)."""


class RemoteNotFound(RemoteError):
    """The remote has no such repository, manifest, blob or upload."""


class RemoteUnsupported(RemoteError):
    """The remote (or its adapter) cannot do this, e.g. list repositories without a catalog."""


class RemoteProtocolError(RemoteError):
    """The remote answered something the protocol does not allow here."""


@dataclass(frozen=True, slots=True)
class Credential:
    type: str
    """``basic``, ``oauth`` or ``secret``."""
    access_key: str = ""
    access_secret: str = ""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a remote registry is and how to reach it (a registry endpoint, opened)."""

    url: str
    credential: Credential | None = None
    insecure: bool = False
    """Skip TLS certificate verification."""
    ca_certificate: str = ""
    """PEM CA bundle verifying the remote's certificate instead of the system's."""


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str
    """``basic`` or ``bearer`` (lower case)."""
    params: Mapping[str, str]


def parse_challenge(header: str | None) -> Challenge | None:
    """``WWW-Authenticate`` as its scheme and parameters (the first challenge only)."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace(
            '\\"', '"'
        )
        for m in _PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


def tls_context(endpoint: Endpoint) -> ssl.SSLContext:
    """What verifies the endpoint's certificate: nothing (``insecure``), its CA bundle, or
    the system's."""
    if endpoint.insecure:
        return unverified_context()
    if endpoint.ca_certificate.strip():
        try:
            return ssl.create_default_context(cadata=endpoint.ca_certificate)
        except (ssl.SSLError, ValueError) as exc:
            raise RemoteError(f"ca_certificate is not a PEM CA bundle: {exc}") from None
    return verifying_context()


def describe_failure(url: str, exc: BaseException) -> str:
    """A transport failure as one line that says what went wrong where."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException | httpcore.TimeoutException):
        return f"{url}: no answer in time ({type(exc).__name__})"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        reason = text.rpartition("certificate verify failed:")[2].strip(" )]") or text
        return (
            f"{url}: TLS certificate not trusted ({reason}); give the endpoint a CA bundle"
            " (ca_certificate) or set insecure"
        )
    return f"{url}: {text}"


Content = bytes | AsyncIterable[bytes] | None
Params = Mapping[str, str] | httpx.QueryParams | None


class RemoteClient:
    """Requests to one registry endpoint; see the module. Close it (``aclose``) when done."""

    def __init__(
        self,
        endpoint: Endpoint,
        egress: EgressPolicy,
        *,
        timeout: float,
        retries: int = 3,
        backoff: float = 0.25,
        resolver: Resolver | None = None,
        max_connections: int = 8,
    ) -> None:
        url = httpx.URL(endpoint.url)
        if url.scheme not in ("http", "https") or not url.host:
            raise RemoteError(f"not an http(s) URL: {endpoint.url}")
        self.endpoint = endpoint
        self.base = str(url).rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._token_locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._challenge: Challenge | None = None
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._http = httpx.AsyncClient(
            transport=CheckedTransport(tls_context(endpoint), egress, resolver, limits),
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
            max_redirects=5,
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> RemoteClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def url(self, path: str) -> str:
        """``path`` (``/v2/…``) on the endpoint, or an absolute URL the remote gave."""
        if path.startswith(("http://", "https://")):
            return path
        return self.base + path

    # --- sending --------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        scope: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Params = None,
        content: Content = None,
        api: bool = False,
    ) -> httpx.Response:
        """Send (authenticating and retrying as the module says). The answer is streamed:
        the caller reads it (``read_limited``, ``aiter_raw``) or closes it.

        ``api``: a call to a REST API beside the registry (Harbor's ``/api/v2.0``), which
        takes the credentials as they are (Basic) and no registry token."""
        url = self.url(path)
        replayable = content is None or isinstance(content, bytes)
        attempts = self.retries + 1 if replayable and method != "PATCH" else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                if api:
                    response = await self._send(
                        method, url, headers, params, content, self._fixed() or self._basic()
                    )
                else:
                    response = await self._send_authorised(
                        method, url, scope, headers, params, content, replayable
                    )
            except OutboundError as exc:
                raise RemoteUnreachable(f"{url}: {exc}") from None
            except httpx.TransportError as exc:
                if last or "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise RemoteUnreachable(describe_failure(url, exc)) from None
                await asyncio.sleep(self.backoff * 2**attempt)
                continue
            if response.status_code in RETRY_STATUSES and not last:
                wait = self._retry_after(response, attempt)
                await discard(response)
                await asyncio.sleep(wait)
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _retry_after(self, response: httpx.Response, attempt: int) -> float:
        raw = response.headers.get("retry-after", "")
        if raw.isdigit():
            return min(float(raw), MAX_RETRY_AFTER)
        return float(self.backoff * 2**attempt)

    async def _send_authorised(
        self,
        method: str,
        url: str,
        scope: str | None,
        headers: Mapping[str, str] | None,
        params: Params,
        content: Content,
        replayable: bool,
    ) -> httpx.Response:
        auth = await self._authorization(scope)
        response = await self._send(method, url, headers, params, content, auth)
        if response.status_code != 401 or not replayable:
            return response
        challenge = parse_challenge(response.headers.get("www-authenticate"))
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            return response
        self._challenge = challenge
        fresh = await self._answer(challenge, scope, auth)
        if fresh is None:
            return response
        await discard(response)
        return await self._send(method, url, headers, params, content, fresh)

    async def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        params: Params,
        content: Content,
        auth: str | None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if auth:
            sent["Authorization"] = auth
        # A URL the remote gave (an upload's Location) keeps its own query (``_state``…):
        # ``params`` are added to it, not put in its place.
        target = httpx.URL(url).copy_merge_params(params) if params else httpx.URL(url)
        request = self._http.build_request(method, target, headers=sent, content=content)
        return await self._http.send(request, stream=True)

    # --- authentication -------------------------------------------------------------------

    def _basic(self) -> str | None:
        credential = self.endpoint.credential
        if credential is None or credential.type != BASIC:
            return None
        pair = f"{credential.access_key}:{credential.access_secret}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def _fixed(self) -> str | None:
        """The header of credentials sent as they are (``oauth`` token, Harbor secret)."""
        credential = self.endpoint.credential
        if credential is not None and credential.type == OAUTH:
            return f"Bearer {credential.access_secret}"
        if credential is not None and credential.type == SECRET:
            return f"Harbor-Secret {credential.access_secret}"
        return None

    async def _authorization(self, scope: str | None) -> str | None:
        """The header to send before any challenge: fixed credentials, or what the last
        challenge asked for (a cached token, Basic)."""
        fixed = self._fixed()
        if fixed is not None:
            return fixed
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return self._basic()
        return await self._bearer(challenge, scope or "", fetch=scope is not None)

    async def _answer(
        self, challenge: Challenge, scope: str | None, sent: str | None
    ) -> str | None:
        """The header that answers ``challenge``, or None when there is nothing new to try."""
        if challenge.scheme == "basic":
            basic = self._basic()
            return basic if basic is not None and basic != sent else None
        wanted = challenge.params.get("scope") or scope or ""
        token = await self._bearer(challenge, wanted, fetch=True, force=True, sent=sent)
        return token if token != sent else None

    async def _bearer(
        self,
        challenge: Challenge,
        scope: str,
        *,
        fetch: bool,
        force: bool = False,
        sent: str | None = None,
    ) -> str | None:
        """The token of ``scope``: the cached one, or (``fetch``) a new one. ``force``: a
        new one unless another request fetched one meanwhile that differs from ``sent``
        (concurrent requests of a scope, a copy's blobs, share one token fetch)."""
        realm = challenge.params.get("realm", "")
        service = challenge.params.get("service", "")
        key = (realm, service, scope)
        cached = self._tokens.get(key)
        if cached is not None and cached[1] > time.monotonic() and not force:
            return f"Bearer {cached[0]}"
        if not fetch:
            return None
        async with self._token_locks.setdefault(key, asyncio.Lock()):
            cached = self._tokens.get(key)
            if (
                cached is not None
                and cached[1] > time.monotonic()
                and (not force or f"Bearer {cached[0]}" != sent)
            ):
                return f"Bearer {cached[0]}"
            token, lifetime = await self._fetch_token(realm, service, scope)
            self._tokens[key] = (token, time.monotonic() + max(lifetime - TOKEN_MARGIN, 1.0))
        return f"Bearer {token}"

    async def _fetch_token(self, realm: str, service: str, scope: str) -> tuple[str, float]:
        """A token from the realm for ``scope`` (Docker's token protocol, GET form)."""
        target = httpx.URL(realm) if realm else None
        if target is None or target.scheme not in ("http", "https") or not target.host:
            raise RemoteProtocolError(
                f"{self.base}: the token realm {realm!r} is not an http(s) URL"
            )
        params: list[tuple[str, str | int | float | bool | None]] = []
        if service:
            params.append(("service", service))
        # Several scopes (a mount reads one repository and writes another) are repeated.
        params.extend(("scope", part) for part in scope.split())
        basic = self._basic()
        try:
            response = await self._send("GET", realm, None, httpx.QueryParams(params), None, basic)
            raw = await read_limited(response)
        except OutboundError as exc:
            raise RemoteUnreachable(f"token service {realm}: {exc}") from None
        except httpx.TransportError as exc:
            raise RemoteUnreachable(describe_failure(f"token service {realm}", exc)) from None
        if response.status_code in (401, 403):
            raise RemoteAuthError(
                f"{self.base}: the token service refused the credentials ({response.status_code})"
            )
        if response.status_code != 200:
            raise RemoteProtocolError(
                f"{self.base}: the token service answered {response.status_code}"
            )
        body = decode_json(raw, f"token service {realm}")
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RemoteProtocolError(f"{self.base}: the token service gave no token")
        lifetime = body.get("expires_in", DEFAULT_TOKEN_SECONDS)
        seconds = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else 60.0
        return token, seconds


def decode_json(raw: bytes, where: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise RemoteProtocolError(f"{where}: the answer is not JSON") from None


async def discard(response: httpx.Response, limit: int = 64 * 1024) -> None:
    """Let an answer go. A small body (a HEAD's none, an error's JSON) is read to its end
    first, so that its connection goes back to the pool instead of being closed."""
    try:
        read = 0
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read > limit:
                break
    except (httpx.TransportError, httpx.StreamError):
        pass
    finally:
        await response.aclose()


async def read_limited(response: httpx.Response, limit: int = MAX_SMALL_BODY) -> bytes:
    """A streamed answer's body, refused past ``limit`` bytes (the connection is closed)."""
    body = bytearray()
    try:
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > limit:
                raise RemoteProtocolError(
                    f"{response.request.url}: the answer is larger than {limit} bytes"
                )
    except httpx.TransportError as exc:
        raise RemoteUnreachable(describe_failure(str(response.request.url), exc)) from None
    finally:
        await response.aclose()
    return bytes(body)


async def aiter_body(response: httpx.Response) -> AsyncIterator[bytes]:
    """A streamed answer's body, raw (as ``aiter_raw``); a failed read raises
    ``RemoteUnreachable``. Close the iterator (``aclose``) or read it to its end.

    A large body of a known length (a blob) is read from the connection itself once
    h11 has handed over what it holds: through h11 each byte is copied twice more (into
    its buffer and out of it) and each read is a trip through h11, httpcore and httpx,
    which on a cold proxy pull was most of the event loop's time (docs/proxy-fill.md).
    The reads keep the client's read timeout and stop at ``Content-Length``. h11 never
    sees such a body end, so its connection is closed when the answer is closed rather
    than pooled: one new connection per large blob.
    """
    where = str(response.request.url)
    length = _direct_length(response)
    stream = response.extensions.get("network_stream")
    # An async generator (httpx types it as an iterator): closed below, whatever happens.
    raw = cast(AsyncGenerator[bytes, None], response.aiter_raw())
    try:
        if length is None or not isinstance(stream, httpcore.AsyncNetworkStream):
            async for chunk in raw:
                yield chunk
            return
        # h11 hands over what it read with the headers (or one read's worth): after
        # that its buffer is empty, and the rest of the body is the connection's.
        first = await anext(raw, b"")
        got = len(first)
        if first:
            yield first
        timeout = response.request.extensions.get("timeout", {}).get("read")
        while got < length:
            piece = await stream.read(min(DIRECT_READ_BYTES, length - got), timeout=timeout)
            if not piece:
                raise RemoteUnreachable(
                    f"{where}: the connection closed after {got} of {length} bytes"
                )
            got += len(piece)
            yield piece
    except (httpx.TransportError, httpcore.TimeoutException, httpcore.NetworkError) as exc:
        raise RemoteUnreachable(describe_failure(where, exc)) from None
    finally:
        await raw.aclose()
        await response.aclose()


def _direct_length(response: httpx.Response) -> int | None:
    """The body's length when ``aiter_body`` reads it past h11: a ``Content-Length`` of
    at least ``DIRECT_BODY_MIN``, not chunked, the connection HTTP/1.1's own."""
    headers = response.headers
    length = headers.get("content-length", "")
    if (
        not length.isdigit()
        or int(length) < DIRECT_BODY_MIN
        or "transfer-encoding" in headers
        or response.http_version != "HTTP/1.1"
    ):
        return None
    return int(length)

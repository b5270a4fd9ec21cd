"""The one client for outbound HTTP: capped, deadline-bound, egress-checked.

Every call Dockyard makes to a server it does not run (webhook deliveries and scanner
adapters today; replication, OIDC and the proxy cache later) goes through
``OutboundClient.request``, which promises three things whatever the far end does:

- **a total deadline**: resolving, connecting, TLS, sending and waiting for the
  status line share one deadline (``outbound_timeout_seconds``), so a server that
  drips one byte at a time cannot keep a call open. Reading the body is bounded by
  the same deadline; when it runs out after the status arrived, the call returns
  what it has with ``complete`` false;
- **bounded memory**: the body is streamed and at most ``max_body`` bytes are kept
  (by default the first 4 KiB, enough for a log line); reading stops there and the
  connection is closed, so an endless or 600 MB answer costs one 64 KiB read. The
  body is asked for with ``Accept-Encoding: identity`` and never decompressed;
- **egress policy** (``http/egress.py``): a name is resolved once, every address it
  resolves to is checked, and the connection goes to a checked address, while the
  URL (and so ``Host`` and TLS SNI and certificate checks) keeps the name. A name
  that rebinds between the check and the connect cannot win: there is no second
  lookup. Redirects are not followed unless the caller asks; when followed, each hop
  connects through the same check, and ``Authorization`` is dropped when the origin
  changes. Proxies from the environment are never used.

The answer is an ``OutboundResponse``; failures are ``OutboundError``s (refused by
the policy, timed out, or failed with the network's reason). Callers map them to
their own errors (a job retries, a service raises an ``AppError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from dockyard.http.egress import EgressPolicy, EgressRefused, IPAddress, parse_ip

if TYPE_CHECKING:
    from dockyard.settings import Settings

DEFAULT_MAX_BODY = 4096
"""Body bytes kept by default: the start of the answer, for a log line."""
USER_AGENT = "Dockyard"
_KEEPALIVE_SECONDS = 5.0
"""How long a session's idle connection is kept for its next call; after that the next call
connects afresh. Short, so a server's own idle timeout (which may close the connection just
as a call is sent on it) is unlikely to come first; the calls a scan makes in a row (and
the ``Refresh-After`` of 2 s Harbor's adapters answer) are well within it."""
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CONTROL = dict.fromkeys((*range(0x20), *range(0x7F, 0xA0)), " ")

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""Turns a host name and port into the addresses to try, in order."""


class OutboundError(Exception):
    """An outbound call that produced no answer; ``str()`` is safe to log and show."""


class OutboundRefused(OutboundError):
    """The egress policy forbids the destination (nothing was sent, nor connected to)."""


class OutboundTimeout(OutboundError):
    """No answer (status line and headers) before the call's deadline."""


class OutboundFailed(OutboundError):
    """The network, TLS or the far end's HTTP failed."""


@dataclass(frozen=True)
class OutboundResponse:
    status_code: int
    headers: list[tuple[str, str]]
    head: bytes
    """The first bytes of the body (at most the call's ``max_body``)."""
    complete: bool
    """Whether ``head`` is the whole body (false: longer, or cut by the deadline)."""
    bytes_read: int
    """Body bytes taken from the connection (at most ``max_body`` plus one read)."""
    elapsed_ms: int
    url: str
    """Where the answer came from (after any redirects followed)."""

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    def head_text(self, limit: int = DEFAULT_MAX_BODY) -> str:
        """The start of the body as one printable line (for logs)."""
        text = self.head[:limit].decode("utf-8", "replace").translate(_CONTROL).strip()
        return text + (" …" if not self.complete or len(self.head) > limit else "")


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The system resolver's addresses for ``host``, each once, in its order."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise OutboundFailed(f"cannot resolve {host}: {exc}") from None
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).partition("%")[0])
        if address not in found:
            found.append(address)
    return found


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network layer with the egress check between lookup and connect (also
    the network layer of the pooled clients of ``remotes/client.py``)."""

    def __init__(self, egress: EgressPolicy, resolver: Resolver | None) -> None:
        self._egress = egress
        self._resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            self._egress.check_host(host)
            literal = parse_ip(host)
            if literal is not None:
                addresses = [literal]
            else:
                # Looked up at call time, so tests can stand in for the system resolver.
                resolve = self._resolver or resolve_host
                addresses = await resolve(host, port)
                for address in addresses:
                    self._egress.check_address(address, host)
        except EgressRefused as exc:
            raise OutboundRefused(str(exc)) from None
        failure: Exception = OutboundFailed(f"{host} resolves to no address")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused("refused by the egress policy: unix sockets are not reachable")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport whose connection pool connects through the egress check (the
    remote-registry clients' and the built-in scanner's pulls)."""

    def __init__(
        self,
        context: ssl.SSLContext,
        egress: EgressPolicy,
        resolver: Resolver | None,
        limits: httpx.Limits,
    ) -> None:
        super().__init__(verify=context, trust_env=False, limits=limits)
        # httpx builds its pool without a choice of network layer; this one is the same
        # pool with the checked backend (the reason for the subclass).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=CheckedBackend(egress, resolver),
        )


@cache
def verifying_context() -> ssl.SSLContext:
    """The CA bundle, loaded once per process (≈ 0.1 s of CPU on the event loop)."""
    return httpx.create_ssl_context()


@cache
def unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@lru_cache(maxsize=8)
def _context_trusting(ca_pem: str) -> ssl.SSLContext:
    """A verifying context that trusts only ``ca_pem`` (an administrator's own CA)."""
    return ssl.create_default_context(cadata=ca_pem)


def _trusting(ca_pem: str) -> ssl.SSLContext:
    try:
        return _context_trusting(ca_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise OutboundFailed(f"the CA certificates cannot be used: {exc}") from None


def _core_request(
    method: str, url: httpx.URL, headers: httpx.Headers, content: bytes, timeout: float
) -> httpcore.Request:
    built = httpx.Request(method, url, headers=headers, content=content)
    return httpcore.Request(
        method=built.method,
        url=httpcore.URL(
            scheme=built.url.raw_scheme,
            host=built.url.raw_host,
            port=built.url.port,
            target=built.url.raw_path,
        ),
        headers=built.headers.raw,
        content=content,
        extensions={
            "timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        },
    )


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


class OutboundClient:
    """Sends one request at a time to a server Dockyard does not run; see the module."""

    def __init__(
        self,
        egress: EgressPolicy,
        *,
        deadline: float,
        resolver: Resolver | None = None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.egress = egress
        self.deadline = deadline
        self.max_body = max_body
        self._resolver = resolver

    @classmethod
    def for_targets(cls, settings: Settings) -> OutboundClient:
        """The client for targets users configure (webhooks, later replication): the
        ``egress_*`` policy and the ``outbound_timeout_seconds`` deadline."""
        return cls(EgressPolicy.from_settings(settings), deadline=settings.outbound_timeout_seconds)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes = b"",
        verify_tls: bool = True,
        ca_pem: str = "",
        max_body: int | None = None,
        max_redirects: int = 0,
    ) -> OutboundResponse:
        """Send, and read the answer's status, headers and first ``max_body`` bytes.

        With ``verify_tls`` and a ``ca_pem``, the server's certificate must chain to one
        of those PEM certificates (instead of the system's CA bundle)."""
        async with self.session(verify_tls=verify_tls, ca_pem=ca_pem) as session:
            return await session.request(
                method,
                url,
                headers=headers,
                content=content,
                verify_tls=verify_tls,
                ca_pem=ca_pem,
                max_body=max_body,
                max_redirects=max_redirects,
            )

    @contextlib.asynccontextmanager
    async def session(
        self, *, verify_tls: bool = True, ca_pem: str = ""
    ) -> AsyncIterator[OutboundSession]:
        """A few calls in a row to one server over one kept-alive connection (a scan job's
        three calls to its adapter): each call keeps every promise of ``request`` (its
        own deadline, its cap, the egress check of each connection made), and a connection
        is reused only for the origin it was opened, checked, and (for https) verified
        for, with the TLS settings given here."""
        context = verifying_context() if verify_tls else unverified_context()
        async with httpcore.AsyncConnectionPool(
            ssl_context=_trusting(ca_pem) if verify_tls and ca_pem else context,
            network_backend=CheckedBackend(self.egress, self._resolver),
            max_connections=1,
            keepalive_expiry=_KEEPALIVE_SECONDS,
            retries=0,
        ) as pool:
            yield OutboundSession(self, pool, verify_tls, ca_pem)

    async def _request(
        self,
        pool: httpcore.AsyncConnectionPool,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None,
        content: bytes,
        max_body: int | None,
        max_redirects: int,
    ) -> OutboundResponse:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        deadline_at = loop.time() + self.deadline
        cap = self.max_body if max_body is None else max_body
        try:
            target = httpx.URL(url)
        except (httpx.InvalidURL, ValueError) as exc:
            raise OutboundFailed(f"not a valid URL: {exc}") from None
        sent = httpx.Headers(
            {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **(headers or {})}
        )
        try:
            for hop in range(max_redirects + 1):
                if target.scheme not in ("http", "https") or not target.host:
                    raise OutboundFailed(f"not an http(s) URL: {target}")
                request = _core_request(method, target, sent, content, self.deadline)
                try:
                    status, answer_headers, head, complete, read = await self._exchange(
                        pool, request, cap, deadline_at
                    )
                except OutboundRefused as exc:
                    if hop == 0:
                        raise
                    raise OutboundRefused(f"redirected to {target}: {exc}") from None
                location = {k.lower(): v for k, v in answer_headers}.get("location")
                if status in _REDIRECTS and location and hop < max_redirects:
                    following = target.join(location)
                    if status == 303 or (status in (301, 302) and method == "POST"):
                        method, content = "GET", b""
                        for name in ("Content-Type", "Content-Length"):
                            sent.pop(name, None)
                    if _origin(following) != _origin(target):
                        sent.pop("Authorization", None)
                    target = following
                    continue
                break
        except httpcore.TimeoutException:
            raise OutboundTimeout(f"no answer within {self.deadline:g} s") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
            raise OutboundFailed(str(exc) or type(exc).__name__) from None
        except (ssl.SSLError, OSError) as exc:
            raise OutboundFailed(str(exc) or type(exc).__name__) from None
        return OutboundResponse(
            status_code=status,
            headers=answer_headers,
            head=head,
            complete=complete,
            bytes_read=read,
            elapsed_ms=int((time.monotonic() - started) * 1000),
            url=str(target),
        )

    async def _exchange(
        self, pool: httpcore.AsyncConnectionPool, request: httpcore.Request, cap: int, at: float
    ) -> tuple[int, list[tuple[str, str]], bytes, bool, int]:
        try:
            async with asyncio.timeout_at(at):
                response = await pool.handle_async_request(request)
        except TimeoutError:
            raise OutboundTimeout(f"no answer within {self.deadline:g} s") from None
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers]
        kept = bytearray()
        read = 0
        complete = True
        try:
            async with asyncio.timeout_at(at):
                stream = response.aiter_stream()
                async for chunk in stream:
                    read += len(chunk)
                    kept += chunk[: cap - len(kept)]
                    if read > cap:
                        complete = False
                        break
        except TimeoutError:
            complete = False  # the status arrived in time; the rest of the body did not
        finally:
            # Closing a response that was not read to its end closes the connection:
            # nothing more is read from it.
            await response.aclose()
        return response.status, headers, bytes(kept), complete, read


class OutboundSession:
    """``OutboundClient.session``'s calls: ``request`` as the client's, on the session's
    pool (one connection, kept alive between calls while ``_KEEPALIVE_SECONDS`` pass)."""

    def __init__(
        self,
        client: OutboundClient,
        pool: httpcore.AsyncConnectionPool,
        verify_tls: bool,
        ca_pem: str,
    ) -> None:
        self._client = client
        self._pool = pool
        self._tls = (verify_tls, ca_pem)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes = b"",
        verify_tls: bool = True,
        ca_pem: str = "",
        max_body: int | None = None,
        max_redirects: int = 0,
    ) -> OutboundResponse:
        """As ``OutboundClient.request``; the TLS settings must be the session's (a call
        that wants others needs a session of its own, never this one's connection)."""
        if (verify_tls, ca_pem) != self._tls:
            raise ValueError("this call's TLS settings are not its session's")
        return await self._client._request(
            self._pool,
            method,
            url,
            headers=headers,
            content=content,
            max_body=max_body,
            max_redirects=max_redirects,
        )

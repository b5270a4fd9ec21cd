"""Pure ASGI middleware: request id, one access-log line per request, last-resort 500, and
``X-Content-Type-Options: nosniff`` on every response (API, /v2/, console, static files), so
no browser ever guesses a user's upload into HTML or script."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockyard.errors import ServiceUnavailableError
from dockyard.http.errors import (
    harbor_error_response,
    internal_error_response,
    oci_error_response,
)

access_log = logging.getLogger("dockyard.access")
error_log = logging.getLogger("dockyard.http")

_MAX_INCOMING_ID = 64
_NOSNIFF = (b"x-content-type-options", b"nosniff")


def _incoming_request_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id":
            text: str = value.decode("latin-1")
            if 0 < len(text) <= _MAX_INCOMING_ID and text.isprintable() and " " not in text:
                return text
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 0
        sent_bytes = 0
        header_bytes = request_id.encode("ascii")

        declared = -1  # the response's Content-Length, for a file the server sends

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent_bytes, declared
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", header_bytes)]
                nosniff = False
                for key, value in headers:
                    lowered = key.lower()
                    if lowered == _NOSNIFF[0]:
                        nosniff = True
                    elif lowered == b"content-length" and value.isdigit():
                        declared = int(value)
                if not nosniff:
                    headers.append(_NOSNIFF)
                message["headers"] = headers
            elif message["type"] == "http.response.body":
                sent_bytes += len(message.get("body", b""))
            elif message["type"] == "http.response.pathsend":
                # The server sends the file itself; count it for the access log, by
                # its Content-Length when the response has one (no stat on the loop).
                if declared >= 0:
                    sent_bytes += declared
                else:
                    with contextlib.suppress(OSError):
                        sent_bytes += os.stat(message["path"]).st_size
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ServiceUnavailableError as exc:
            # Raised before a route's own error handling (e.g. a guard that reads the
            # database): still a 503 with its retry hint, not an internal error.
            if status == 0:
                render = (
                    oci_error_response if scope["path"].startswith("/v2") else harbor_error_response
                )
                await render(exc, request_id)(scope, receive, send_wrapper)
        except Exception:
            error_log.exception("unhandled error in request %s", request_id)
            if status == 0:
                oci = scope["path"].startswith("/v2")
                await internal_error_response(request_id, oci)(scope, receive, send_wrapper)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                access_log.info(
                    '%s "%s %s" %d %d %.1fms id=%s',
                    client[0] if client else "-",
                    scope["method"],
                    scope["path"],
                    status,
                    sent_bytes,
                    (time.perf_counter() - started) * 1000,
                    request_id,
                )

"""ASGI middleware for Harbor's read-only mode (``dockyard.system.readonly``).

It sits ahead of ``RegistryFace`` and the router, as Harbor's read-only middleware
sits ahead of its handlers: a change (any method but GET, HEAD and OPTIONS) to
``/v2/`` or ``/api/v2.0/`` is answered ``403 DENIED`` while the mode is on, whoever
asks. ``PUT /api/v2.0/configurations`` (to switch it off) passes; console logins
(``/c/login``) are outside both prefixes. Reads cost no query: the flag is cached.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from dockyard.http.errors import harbor_error_response, oci_error_response
from dockyard.system import readonly

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ALLOWED = frozenset({("PUT", "/api/v2.0/configurations")})


def _guarded(method: str, path: str) -> bool:
    if method in _SAFE_METHODS or (method, path.rstrip("/")) in _ALLOWED:
        return False
    return path == "/v2" or path.startswith(("/v2/", "/api/v2.0/"))


class ReadOnlyGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _guarded(scope["method"], scope["path"]):
            state = scope["app"].state.dockyard
            if await readonly.is_on(state.db):
                error = readonly.ReadOnlyError(readonly.MESSAGE)
                request_id = scope.get("state", {}).get("request_id", "-")
                if scope["path"].startswith("/v2"):
                    response = oci_error_response(error, request_id)
                else:
                    response = harbor_error_response(error, request_id)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

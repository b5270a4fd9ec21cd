"""``/api/v2.0`` system endpoints: ping, health, system info, statistics."""

from __future__ import annotations

from starlette.responses import PlainTextResponse, Response

from dockyard.http.api import ApiRequest, Operation, operation


@operation("GET", "/ping", "getPing")
async def get_ping(api: ApiRequest) -> Response:
    """Liveness: always ``Pong``."""
    return PlainTextResponse("Pong")


operations: list[Operation] = [get_ping]

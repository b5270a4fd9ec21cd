"""Probes for orchestrators, outside Harbor's API: ``/livez`` and ``/readyz``.

Unauthenticated and cheap (``docs/health.md``):

- ``GET /livez`` answers ``200 ok`` whenever the event loop runs this handler; it asks
  nothing else, so a database outage never gets a healthy process restarted.
- ``GET /readyz`` answers ``200 ok`` when this node may take traffic, else ``503`` with
  one line per reason: shutting down, the database unreachable or not migrated to this
  build's head, the storage not working. Answers are shared for a second
  (``system/health.py``), so probes cannot stall the server.

Harbor's own liveness path, ``/api/v2.0/ping``, answers too.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from dockyard.http.state import get_state

LIVENESS_PATH = "/livez"
READINESS_PATH = "/readyz"
_NO_STORE = {"Cache-Control": "no-store"}


async def livez(request: Request) -> Response:
    return PlainTextResponse("ok\n", headers=_NO_STORE)


async def readyz(request: Request) -> Response:
    readiness = await get_state(request).health.readiness()
    if readiness.ready:
        return PlainTextResponse("ok\n", headers=_NO_STORE)
    body = "not ready\n" + "".join(f"{problem}\n" for problem in readiness.problems)
    return PlainTextResponse(body, status_code=503, headers=_NO_STORE)


def probe_routes() -> list[Route]:
    return [
        Route(LIVENESS_PATH, livez, methods=["GET", "HEAD"]),
        Route(READINESS_PATH, readyz, methods=["GET", "HEAD"]),
    ]

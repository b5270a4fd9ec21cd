"""``GET /api/v2.0/icons/{digest}``: an artifact's icon as Harbor's ``Icon``."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from dockyard.artifacts import icons
from dockyard.http.api import ApiRequest, Operation, operation


@operation("GET", "/icons/{digest}", "getIcon")
async def get_icon(api: ApiRequest) -> Response:
    """The icon an artifact the caller may see names (400 for a malformed digest, 404
    for one no visible artifact names)."""
    principal = await api.principal()
    async with api.state.db.read() as session:
        digest = await icons.find_icon(session, principal, api.path("digest"))
    icon = await icons.icon_content(api.state.storage, digest)
    # Harbor spells the field with a hyphen, which a pydantic field name cannot hold.
    return JSONResponse({"content-type": icon.content_type, "content": icon.content})


operations: list[Operation] = [get_icon]

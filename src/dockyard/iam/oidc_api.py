"""Harbor's ``POST /system/oidc/ping``: does an OIDC provider answer discovery and publish
its keys? (System administrators; nothing is stored.)"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from dockyard.http.api import ApiRequest, Operation, empty_response, operation
from dockyard.iam.policy import Action, Resource, can


class OidcPingBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    url: str
    verify_cert: bool = True


@operation("POST", "/system/oidc/ping", "pingOIDC", body=OidcPingBody)
async def ping_oidc(api: ApiRequest) -> Response:
    """200 when ``url`` is an OIDC provider whose discovery and key set can be read; a 400
    that says what failed otherwise."""
    principal = await api.principal()
    await api.require(
        principal.sysadmin and can(principal, Action.UPDATE, Resource.USER, None),
        "test an OIDC provider",
    )
    body = await api.json(OidcPingBody)
    await api.state.identity.ping_oidc(body.url, body.verify_cert)
    return empty_response()


operations: list[Operation] = [ping_oidc]

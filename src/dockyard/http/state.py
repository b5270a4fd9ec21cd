"""What handlers reach through ``request.app.state``: built once in ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from dockyard.db.engine import Database
from dockyard.iam.service import IdentityService
from dockyard.iam.tokens import TokenAuthority
from dockyard.registry.service import RegistryService
from dockyard.settings import Settings
from dockyard.storage import Storage


@dataclass
class AppState:
    settings: Settings
    db: Database
    storage: Storage
    tokens: TokenAuthority
    identity: IdentityService
    registry: RegistryService


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.dockyard
    return state


def base_url(request: Request, settings: Settings) -> str:
    """``external_url`` when set; else the scheme and host the client used."""
    if settings.external_url:
        return settings.external_url
    host = request.headers.get("host")
    if not host:
        return settings.public_url
    return f"{request.url.scheme}://{host}"


def client_address(request: Request) -> str:
    return request.client.host if request.client else "-"

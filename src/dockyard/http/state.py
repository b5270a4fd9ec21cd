"""What handlers reach through ``request.app.state``: built once in ``create_app``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.requests import Request

from dockyard.db.engine import Database
from dockyard.http.forwarded import client_ip, trusted_networks
from dockyard.iam.service import IdentityService
from dockyard.iam.tokens import TokenAuthority
from dockyard.jobs.runner import JobRunner, JobType
from dockyard.lru import LruCache
from dockyard.registry.service import RegistryService
from dockyard.settings import Settings
from dockyard.storage import Storage
from dockyard.system.health import HealthMonitor


@dataclass
class AppState:
    settings: Settings
    db: Database
    storage: Storage
    tokens: TokenAuthority
    identity: IdentityService
    registry: RegistryService
    health: HealthMonitor
    """Health and readiness checks (``/api/v2.0/health``, ``/readyz``)."""
    job_types: Mapping[str, JobType] = field(default_factory=dict)
    """Every job type this build knows (the queues the dashboard shows)."""
    jobs: JobRunner | None = None
    """This process's workers (``None`` when ``job_workers`` is 0)."""
    chart_files: LruCache[tuple[str, str], tuple[str | None, str | None]] = field(
        default_factory=lambda: LruCache(
            512, 32 * 1024 * 1024, lambda found: len(found[0] or "") + len(found[1] or "") + 64
        )
    )
    """(the file's text, or why the archive was refused) for a file of a chart archive, by
    (archive digest, file name): blobs never change, so an archive is unpacked once per
    file, not on every additions GET."""


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
    # The scope's scheme, which is what ``request.url.scheme`` says, without building
    # and parsing the whole URL on every registry response that carries a Location.
    return f"{request.scope.get('scheme', 'http')}://{host}"


def client_address(request: Request) -> str:
    """The client's IP: the peer, or what trusted proxies (``trusted_proxies``) say it is."""
    scope_state = request.scope.setdefault("state", {})
    known: str | None = scope_state.get("client_address")
    if known is not None:
        return known
    address = peer = request.client.host if request.client else "-"
    proxies = get_state(request).settings.trusted_proxies
    if proxies:
        address = client_ip(
            peer,
            request.headers.getlist("forwarded"),
            request.headers.getlist("x-forwarded-for"),
            trusted_networks(tuple(proxies)),
        )
    scope_state["client_address"] = address
    return address

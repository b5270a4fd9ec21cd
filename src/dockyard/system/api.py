"""``/api/v2.0`` system endpoints: ping, health, system info, statistics, the OpenAPI document."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime

from pydantic import BaseModel
from starlette.responses import JSONResponse, PlainTextResponse, Response

from dockyard.db.base import utcnow
from dockyard.errors import BadRequestError, NotFoundError, UnauthorizedError
from dockyard.http.api import (
    ApiRequest,
    Operation,
    api_operations,
    empty_response,
    json_response,
    operation,
)
from dockyard.http.openapi import build_openapi
from dockyard.iam.policy import ANONYMOUS, Principal
from dockyard.iam.providers import authproxy
from dockyard.system import config, health, service

# --- Harbor's shapes (swagger definitions of the same names) ---------------------------


class ComponentHealthStatus(BaseModel):
    name: str
    status: str
    error: str | None = None


class OverallHealthStatus(BaseModel):
    status: str
    components: list[ComponentHealthStatus]


class AuthproxySetting(BaseModel):
    endpoint: str
    tokenreivew_endpoint: str
    """Spelt as Harbor's swagger spells it."""
    skip_search: bool
    verify_cert: bool
    server_certificate: str


class GeneralInfo(BaseModel):
    """Anonymous callers get the first block only; signed-in ones everything."""

    auth_mode: str | None = None
    primary_auth_mode: bool | None = None
    self_registration: bool | None = None
    harbor_version: str | None = None
    banner_message: str | None = None
    current_time: datetime | None = None
    external_url: str | None = None
    registry_url: str | None = None
    project_creation_restriction: str | None = None
    has_ca_root: bool | None = None
    read_only: bool | None = None
    notification_enable: bool | None = None
    registry_storage_provider_name: str | None = None
    authproxy_settings: AuthproxySetting | None = None
    """Under ``http_auth`` only (Harbor shows it to anyone; here to signed-in callers)."""
    oidc_provider_name: str | None = None


class Storage(BaseModel):
    total: int
    free: int


class SystemInfo(BaseModel):
    storage: list[Storage]


class InternalConfigurationValue(BaseModel):
    value: bool | int | str
    editable: bool


class Statistic(BaseModel):
    private_project_count: int
    private_repo_count: int
    public_project_count: int
    public_repo_count: int
    total_project_count: int
    total_repo_count: int
    total_storage_consumption: int


# --- operations ------------------------------------------------------------------------


@operation("GET", "/ping", "getPing")
async def get_ping(api: ApiRequest) -> Response:
    """Liveness: always ``Pong``."""
    return PlainTextResponse("Pong")


@operation("GET", "/health", "getHealth", response=OverallHealthStatus)
async def get_health(api: ApiRequest) -> Response:
    """Health of core, database, storage and job workers (``system/health.py``); 200 even
    when unhealthy, as Harbor answers (``/readyz`` is the probe that fails)."""
    components = await api.state.health.components()
    healthy = all(c.status == health.HEALTHY for c in components)
    return json_response(
        OverallHealthStatus(
            status=health.HEALTHY if healthy else health.UNHEALTHY,
            components=[ComponentHealthStatus(**asdict(c)) for c in components],
        )
    )


@operation("GET", "/systeminfo", "getSystemInfo", response=GeneralInfo)
async def get_system_info(api: ApiRequest) -> Response:
    """General system info; signed-in callers also get the registry URL and settings."""
    principal = await _principal_or_anonymous(api)
    async with api.state.db.read() as session:
        props = await service.system_properties(session)
        auth_mode = str(await config.value(session, config.AUTH_MODE))
        proxy = await authproxy.load_config(session) if auth_mode == authproxy.MODE else None
        oidc = auth_mode == "oidc_auth"
        oidc_name = str(await config.value(session, config.OIDC_NAME)) if oidc else ""
        # True only where it acts: it changes nothing outside oidc_auth.
        primary = oidc and bool(await config.value(session, config.PRIMARY_AUTH_MODE))
    info = GeneralInfo(
        auth_mode=auth_mode,
        oidc_provider_name=oidc_name or None,
        primary_auth_mode=primary,
        self_registration=props.self_registration,
        harbor_version=service.dockyard_version(),
        banner_message=props.banner_message,
    )
    if principal.is_anonymous:
        return json_response(info)
    external_url = api.base_url()
    return json_response(
        info.model_copy(
            update={
                "current_time": utcnow(),
                "external_url": external_url,
                "registry_url": external_url.split("://", 1)[-1],
                "project_creation_restriction": props.project_creation_restriction,
                "has_ca_root": False,
                "read_only": props.read_only,
                "notification_enable": props.notification_enable,
                "registry_storage_provider_name": api.state.settings.storage_driver,
                "authproxy_settings": None
                if proxy is None
                else AuthproxySetting(
                    endpoint=proxy.endpoint,
                    tokenreivew_endpoint=proxy.tokenreview_endpoint,
                    skip_search=proxy.skip_search,
                    verify_cert=proxy.verify_cert,
                    server_certificate=proxy.server_certificate,
                ),
            }
        )
    )


@operation("GET", "/systeminfo/volumes", "getVolumes", response=SystemInfo)
async def get_volumes(api: ApiRequest) -> Response:
    """Size and free space of the blob store's volume (administrators only, as Harbor);
    an empty list with S3 storage, which has no volume to measure."""
    await _administrator(api, "read the storage volumes")
    settings = api.state.settings
    local = settings.storage_driver == "filesystem"
    volumes = await service.storage_volumes(settings.effective_storage_root if local else None)
    return json_response(SystemInfo(storage=[Storage(total=v.total, free=v.free) for v in volumes]))


@operation("GET", "/systeminfo/getcert", "getCert")
async def get_cert(api: ApiRequest) -> Response:
    """The CA root certificate Harbor hands out when it made its own certificates.
    Dockyard makes none (``has_ca_root`` is false), so there is none to download:
    404, as Harbor answers when it has no CA root."""
    raise NotFoundError("Dockyard has no CA root certificate (has_ca_root is false)")


@operation("GET", "/internalconfig", "getInternalconfig")
async def get_internalconfig(api: ApiRequest) -> Response:
    """Every configuration item with the start-time facts Harbor's components read
    (``ext_endpoint``), as ``{key: {value, editable}}``; administrators only."""
    await _administrator(api, "read the internal configuration")
    async with api.state.db.read() as session:
        items = await config.current(session, api.state.settings, own=True)
    body = {
        key: InternalConfigurationValue(value=value, editable=editable).model_dump()
        for key, (value, editable) in items.items()
    }
    body["ext_endpoint"] = {"value": api.base_url(), "editable": False}
    return JSONResponse(body)


async def _principal_or_anonymous(api: ApiRequest) -> Principal:
    """Credentials that do not sign in leave the caller anonymous here, as in Harbor."""
    try:
        return await api.principal()
    except UnauthorizedError:
        return ANONYMOUS


@operation("GET", "/statistics", "getStatistic", response=Statistic)
async def get_statistic(api: ApiRequest) -> Response:
    """Project and repository counts over what the caller can see (signed-in callers only)."""
    principal = await api.user()
    async with api.state.db.read() as session:
        stats = await service.statistics(session, principal)
    return json_response(Statistic(**asdict(stats)))


async def _administrator(api: ApiRequest, what: str = "manage the configuration") -> Principal:
    principal = await api.principal()
    await api.require(principal.sysadmin and not principal.is_robot, what)
    return principal


@operation("GET", "/configurations", "getConfigurations")
async def get_configurations(api: ApiRequest) -> Response:
    """System configuration items as ``{key: {value, editable}}`` (administrators only)."""
    await _administrator(api)
    async with api.state.db.read() as session:
        items = await config.current(session, api.state.settings)
    return json_response({k: {"value": v, "editable": e} for k, (v, e) in items.items()})


@operation("PUT", "/configurations", "updateConfigurations")
async def update_configurations(api: ApiRequest) -> Response:
    """Change editable items, all or nothing; unknown or read-only keys are a 400."""
    await _administrator(api)
    try:
        changes = json.loads(await api.raw_body())
    except (ValueError, RecursionError):
        raise BadRequestError("the request body is not valid JSON") from None
    if not isinstance(changes, dict):
        raise BadRequestError("the request body must be a JSON object of items to change")
    actor = await api.actor()
    async with api.state.db.write() as session:
        await service.update_configuration(session, actor, changes)
    return empty_response()


@operation("GET", "/openapi.json", None)
async def get_openapi(api: ApiRequest) -> Response:
    """This API as an OpenAPI 3.1 document, built from the operations the app serves."""
    operations = list({id(op): op for op in api_operations(api.request.app.routes)}.values())
    return JSONResponse(build_openapi(operations, version=service.dockyard_version()))


operations: list[Operation] = [
    get_ping,
    get_health,
    get_system_info,
    get_statistic,
    get_volumes,
    get_cert,
    get_internalconfig,
    get_configurations,
    update_configurations,
    get_openapi,
]

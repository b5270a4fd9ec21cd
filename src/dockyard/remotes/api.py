"""``/api/v2.0/registries`` and ``/replication/adapters``, ``/replication/adapterinfos``
(swagger tags ``registry``, ``replication``). Endpoints are the system resource
``registry`` (system administrators, and robots granted it); the adapter lists are
``replication-adapter`` list."""

from __future__ import annotations

from starlette.responses import Response

from dockyard.errors import BadRequestError
from dockyard.http.api import (
    API_PREFIX,
    ApiRequest,
    Operation,
    created_response,
    empty_response,
    json_response,
    operation,
    paged_response,
)
from dockyard.http.egress import EgressPolicy
from dockyard.iam.policy import Action, Resource, can
from dockyard.remotes import service
from dockyard.remotes.schemas import (
    Registry,
    RegistryInfo,
    RegistryPing,
    RegistryProviderInfo,
    RegistryUpdate,
)
from dockyard.replication import service as replication

REGISTRIES = "/registries"
REGISTRY = REGISTRIES + "/{id}"


async def _require(api: ApiRequest, action: Action, what: str) -> None:
    principal = await api.principal()
    await api.require(can(principal, action, Resource.REGISTRY, None), what)


def _egress(api: ApiRequest) -> EgressPolicy:
    return EgressPolicy.from_settings(api.state.settings)


def _reach(api: ApiRequest) -> service.Reach:
    settings = api.state.settings
    return service.Reach(_egress(api), settings.outbound_timeout_seconds)


@operation(
    "GET",
    REGISTRIES,
    "listRegistries",
    query=("q", "sort", "page", "page_size", "name"),
    response=list[Registry],
)
async def list_registries(api: ApiRequest) -> Response:
    """The registry endpoints (``q``/``sort``: id, name, type, url, status, times)."""
    await _require(api, Action.LIST, "list registries")
    page = api.page()
    async with api.state.db.read() as session:
        items, total = await service.list_endpoints(
            session, api.query("q"), api.query("sort"), api.query("name"), page
        )
    return paged_response(api, items, total, page)


@operation("POST", REGISTRIES, "createRegistry", body=Registry, status=201)
async def create_registry(api: ApiRequest) -> Response:
    """Add an endpoint; its secret is sealed at rest and never shown again."""
    await _require(api, Action.CREATE, "create registries")
    body = await api.json(Registry)
    async with api.state.db.write() as session:
        registry_id = await service.create_endpoint(session, await api.actor(), body, _egress(api))
    return created_response(f"{API_PREFIX}{REGISTRIES}/{registry_id}")


@operation("POST", REGISTRIES + "/ping", "pingRegistry", body=RegistryPing)
async def ping_registry(api: ApiRequest) -> Response:
    """Reach an endpoint, saved (``id``) or not, and check its credentials; 400 saying
    why when it cannot be reached or refuses them."""
    await _require(api, Action.READ, "ping registries")
    body = await api.json(RegistryPing)
    async with api.state.db.read() as session:
        kind, endpoint = await service.ping_target(session, body, _egress(api))
    problem = await service.ping(kind, endpoint, _reach(api))
    if body.id is not None:
        async with api.state.db.write() as session:
            await service.record_status(session, body.id, problem is None)
    if problem is not None:
        raise BadRequestError(f"the registry is unhealthy: {problem}")
    return empty_response()


@operation("GET", REGISTRY, "getRegistry", response=Registry)
async def get_registry(api: ApiRequest) -> Response:
    await _require(api, Action.READ, "read registries")
    registry_id = api.path_int("id")
    async with api.state.db.read() as session:
        found = await service.get_endpoint(session, registry_id)
    return json_response(found)


@operation("PUT", REGISTRY, "updateRegistry", body=RegistryUpdate)
async def update_registry(api: ApiRequest) -> Response:
    """Change an endpoint; fields left out keep their value (``*****`` keeps the secret)."""
    await _require(api, Action.UPDATE, "update registries")
    registry_id = api.path_int("id")
    body = await api.json(RegistryUpdate)
    async with api.state.db.write() as session:
        await service.update_endpoint(session, await api.actor(), registry_id, body, _egress(api))
    return empty_response()


@operation("DELETE", REGISTRY, "deleteRegistry")
async def delete_registry(api: ApiRequest) -> Response:
    await _require(api, Action.DELETE, "delete registries")
    registry_id = api.path_int("id")
    async with api.state.db.write() as session:
        await replication.check_endpoint_unused(session, registry_id)
        await service.delete_endpoint(session, await api.actor(), registry_id)
    return empty_response()


@operation("GET", REGISTRY + "/info", "getRegistryInfo", response=RegistryInfo)
async def get_registry_info(api: ApiRequest) -> Response:
    """What the endpoint's kind supports: resource filters, triggers, copy by chunk."""
    await _require(api, Action.READ, "read registries")
    registry_id = api.path_int("id")
    async with api.state.db.read() as session:
        info = await service.endpoint_info(session, registry_id)
    return json_response(info)


@operation("GET", "/replication/adapters", "listRegistryProviderTypes", response=list[str])
async def list_adapters(api: ApiRequest) -> Response:
    """The kinds of remote registry an endpoint may be."""
    principal = await api.principal()
    await api.require(
        can(principal, Action.LIST, Resource.REPLICATION_ADAPTER, None), "list adapters"
    )
    return json_response(service.adapter_kinds())


@operation(
    "GET",
    "/replication/adapterinfos",
    "listRegistryProviderInfos",
    response=dict[str, RegistryProviderInfo],
)
async def list_adapter_infos(api: ApiRequest) -> Response:
    """Per kind: whether its URL is typed in or fixed, and what its credential is."""
    principal = await api.principal()
    await api.require(
        can(principal, Action.LIST, Resource.REPLICATION_ADAPTER, None), "list adapters"
    )
    return json_response(service.provider_infos())


# Fixed paths before their ``{id}`` siblings: the router takes the first.
operations: list[Operation] = [
    list_registries,
    create_registry,
    ping_registry,
    get_registry,
    update_registry,
    delete_registry,
    get_registry_info,
    list_adapters,
    list_adapter_infos,
]

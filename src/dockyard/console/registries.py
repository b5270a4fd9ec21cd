"""Administration, Registries: the remote registry endpoints replication reaches.

Handlers call ``remotes.service`` as ``/api/v2.0/registries`` does, after the same ``can``
check on the system resource ``registry`` (``require_system``), and deleting asks
``replication.service.check_endpoint_unused`` first, as ``deleteRegistry`` does. The
secret is write-only: the form never shows it, and on an edit a blank field keeps the
stored one. A form refused by the service (a bad URL, a name in use, a bad CA bundle) is
shown again with what was typed (the secret excepted) and the reason above it. "Test
connection" asks ``remotes.service.ping`` with the form's values (over the stored
endpoint's when editing) and saves nothing but the endpoint's status; through htmx it
answers the result alone, without JavaScript the form again with the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.responses import Response
from starlette.routing import Route

from dockyard.console.admin import ADMIN, require_system
from dockyard.console.projects import pages_of
from dockyard.console.web import Handler, Page, with_query
from dockyard.errors import BadRequestError, ConflictError
from dockyard.http.egress import EgressPolicy
from dockyard.iam.policy import Action, Resource, can
from dockyard.remotes import service
from dockyard.remotes.client import CREDENTIAL_TYPES
from dockyard.remotes.schemas import Registry, RegistryCredential, RegistryPing, RegistryUpdate
from dockyard.replication import service as replication

REGISTRIES = ADMIN + "/registries"
NO_CREDENTIAL = "none"
_PING_RESULT = "ping-result"
"""The htmx target the connection test's answer goes into."""


@dataclass
class EndpointForm:
    """What the endpoint form shows: a stored endpoint's fields, or what was typed."""

    id: int | None = None
    name: str = ""
    type: str = "docker-registry"
    url: str = ""
    description: str = ""
    credential_type: str = "basic"
    access_key: str = ""
    has_secret: bool = False
    insecure: bool = False
    ca_certificate: str = ""


def _egress(page: Page) -> EgressPolicy:
    return EgressPolicy.from_settings(page.state.settings)


def _reach(page: Page) -> service.Reach:
    return service.Reach(_egress(page), page.state.settings.outbound_timeout_seconds)


def _stored(found: Registry) -> EndpointForm:
    credential = found.credential
    return EndpointForm(
        id=found.id,
        name=found.name or "",
        type=found.type or "",
        url=found.url or "",
        description=found.description or "",
        credential_type=(credential.type or "basic") if credential else NO_CREDENTIAL,
        access_key=(credential.access_key or "") if credential else "",
        has_secret=bool(credential and credential.access_secret),
        insecure=bool(found.insecure),
        ca_certificate=found.ca_certificate or "",
    )


def _typed(page: Page, registry_id: int | None, has_secret: bool = False) -> EndpointForm:
    return EndpointForm(
        id=registry_id,
        name=page.field("name"),
        type=page.field("type"),
        url=page.field("url").strip(),
        description=page.field("description"),
        credential_type=page.field("credential_type", "basic"),
        access_key=page.field("access_key").strip(),
        has_secret=has_secret,
        insecure=page.checked("insecure"),
        ca_certificate=page.field("ca_certificate").strip(),
    )


def _credential_type(typed: EndpointForm) -> str:
    kind = typed.credential_type
    if kind != NO_CREDENTIAL and kind not in CREDENTIAL_TYPES:
        raise BadRequestError(f"credential type must be none or {', '.join(CREDENTIAL_TYPES)}")
    return kind


async def registry_list(page: Page) -> Response:
    require_system(page, Action.LIST, Resource.REGISTRY)
    search = page.query("q").strip()[:255]
    request = page.page_request()
    async with page.state.db.read() as session:
        found, total = await service.list_endpoints(session, None, "name", search, request)
    return page.render(
        "admin/registries.html",
        section="registries",
        registries=found,
        paging=pages_of(total, request),
        search=search,
        may_create=can(page.principal, Action.CREATE, Resource.REGISTRY, None),
        may_update=can(page.principal, Action.UPDATE, Resource.REGISTRY, None),
        may_delete=can(page.principal, Action.DELETE, Resource.REGISTRY, None),
        list_url=lambda **p: with_query(REGISTRIES, q=search, **p),
    )


def _form_page(
    page: Page,
    form: EndpointForm,
    *,
    error: str = "",
    ping: tuple[bool, str] | None = None,
    status: int = 200,
) -> Response:
    return page.render(
        "admin/registry_form.html",
        status=status,
        section="registries",
        form=form,
        kinds=service.adapter_kinds(),
        infos=service.provider_infos(),
        credential_types=[NO_CREDENTIAL, *CREDENTIAL_TYPES],
        error=error,
        ping=ping,
        ping_target=_PING_RESULT,
    )


async def new_registry(page: Page) -> Response:
    require_system(page, Action.CREATE, Resource.REGISTRY)
    return _form_page(page, EndpointForm())


async def edit_registry(page: Page) -> Response:
    require_system(page, Action.UPDATE, Resource.REGISTRY)
    registry_id = page.path_int("registry")
    async with page.state.db.read() as session:
        found = await service.get_endpoint(session, registry_id)
    return _form_page(page, _stored(found))


def _refused(page: Page, form: EndpointForm, exc: BadRequestError | ConflictError) -> Response:
    return _form_page(page, form, error=exc.message, status=400)


async def create_registry(page: Page) -> Response:
    require_system(page, Action.CREATE, Resource.REGISTRY)
    typed = _typed(page, None)
    try:
        kind = _credential_type(typed)
        secret = page.field("access_secret")
        anonymous = kind == NO_CREDENTIAL or not (typed.access_key or secret)
        body = Registry(
            name=typed.name,
            type=typed.type,
            url=typed.url,
            description=typed.description,
            credential=None
            if anonymous
            else RegistryCredential(type=kind, access_key=typed.access_key, access_secret=secret),
            insecure=typed.insecure,
            ca_certificate=typed.ca_certificate,
        )
        async with page.state.db.write() as session:
            await service.create_endpoint(session, page.actor(), body, _egress(page))
    except (BadRequestError, ConflictError) as exc:
        return _refused(page, typed, exc)
    return page.redirect(REGISTRIES, "flash.registry_created", name=typed.name.strip())


def _update_body(page: Page, typed: EndpointForm) -> RegistryUpdate:
    """The form as an update: a blank secret keeps the stored one; ``none`` removes the
    credential."""
    kind = _credential_type(typed)
    secret = page.field("access_secret")
    body = RegistryUpdate(
        name=typed.name,
        description=typed.description,
        url=typed.url,
        insecure=typed.insecure,
        ca_certificate=typed.ca_certificate,
    )
    if kind == NO_CREDENTIAL or not (typed.access_key or secret or typed.has_secret):
        body.credential_type, body.access_key, body.access_secret = "", "", ""
    else:
        body.credential_type, body.access_key = kind, typed.access_key
        body.access_secret = secret or None
    return body


async def update_registry(page: Page) -> Response:
    require_system(page, Action.UPDATE, Resource.REGISTRY)
    registry_id = page.id_field("registry", "a registry's id")
    async with page.state.db.read() as session:
        stored = _stored(await service.get_endpoint(session, registry_id))
    typed = _typed(page, registry_id, stored.has_secret)
    typed.type = stored.type  # the kind of a saved endpoint does not change (as in Harbor)
    try:
        body = _update_body(page, typed)
        async with page.state.db.write() as session:
            await service.update_endpoint(session, page.actor(), registry_id, body, _egress(page))
    except (BadRequestError, ConflictError) as exc:
        return _refused(page, typed, exc)
    return page.redirect(REGISTRIES, "flash.registry_saved", name=typed.name.strip())


async def ping_registry(page: Page) -> Response:
    """Test the form's endpoint (saved or not) without saving it."""
    require_system(page, Action.READ, Resource.REGISTRY)
    raw_id = page.field("registry").strip()
    registry_id = page.id_field("registry", "a registry's id") if raw_id else None
    stored: EndpointForm | None = None
    if registry_id is not None:
        async with page.state.db.read() as session:
            stored = _stored(await service.get_endpoint(session, registry_id))
    typed = _typed(page, registry_id, stored.has_secret if stored else False)
    if stored is not None and page.field("from") == "list":
        typed = stored  # the list's button tests the endpoint as it is saved
    try:
        update = _update_body(page, typed)
        body = RegistryPing(
            id=registry_id,
            type=None if registry_id is not None else typed.type,
            url=update.url,
            credential_type=update.credential_type,
            access_key=update.access_key,
            access_secret=update.access_secret,
            insecure=update.insecure,
            ca_certificate=update.ca_certificate,
        )
        async with page.state.db.read() as session:
            kind, endpoint = await service.ping_target(session, body, _egress(page))
        typed.type = kind
    except (BadRequestError, ConflictError) as exc:
        problem: str | None = exc.message
    else:
        problem = await service.ping(kind, endpoint, _reach(page))
        if registry_id is not None:
            async with page.state.db.write() as session:
                await service.record_status(session, registry_id, problem is None)
    result = (problem is None, problem or "")
    if page.field("from") == "list":
        if problem is None:
            return page.redirect(REGISTRIES, "flash.registry_ping_ok", name=typed.name)
        return page.redirect(
            REGISTRIES, "flash.registry_ping_failed", "error", name=typed.name, reason=problem
        )
    if page.request.headers.get("hx-target") == _PING_RESULT:
        return page.render("admin/_registry_ping.html", ping=result)
    return _form_page(page, typed, ping=result)


async def delete_registry(page: Page) -> Response:
    """Refused (with the policies' names) while a replication rule uses the endpoint."""
    require_system(page, Action.DELETE, Resource.REGISTRY)
    registry_id = page.id_field("registry", "a registry's id")
    async with page.state.db.write() as session:
        found = await service.get_endpoint(session, registry_id)
        await replication.check_endpoint_unused(session, registry_id)
        await service.delete_endpoint(session, page.actor(), registry_id)
    return page.redirect(REGISTRIES, "flash.registry_deleted", name=found.name or "")


def routes(
    get: Callable[[str, Handler], Route], post: Callable[[str, Handler], Route]
) -> list[Route]:
    """POST paths carry no ids (the form does), as the job pages' do."""
    return [
        get(REGISTRIES, registry_list),
        post(REGISTRIES, create_registry),
        get(REGISTRIES + "/new", new_registry),
        post(REGISTRIES + "/update", update_registry),
        post(REGISTRIES + "/ping", ping_registry),
        post(REGISTRIES + "/delete", delete_registry),
        get(REGISTRIES + "/{registry}/edit", edit_registry),
    ]

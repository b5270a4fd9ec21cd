"""The ``/api/v2.0`` face: Harbor's REST API shapes, one ``Operation`` per swagger operation.

Each domain's ``api.py`` declares its operations with ``operation(...)``: the
HTTP method, the path as Harbor's swagger spells it (``/projects/{project_name_or_id}``),
the swagger ``operationId``, the query parameters the handler reads, and the
request/response schemas. ``api_routes`` turns them into Starlette routes that
authenticate the caller, turn every ``AppError`` into Harbor's error body and
never leak a traceback. The contract test and the generated OpenAPI document
read the same declarations.

Handlers are thin: parse, ask ``can`` (through the service), call one service,
shape the answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route

from dockyard.audit import service as audit
from dockyard.audit.events import Actor, AuditEvent
from dockyard.db.listing import PageRequest, parse_page
from dockyard.errors import (
    AppError,
    BadRequestError,
    ConflictError,
    DeniedError,
    EndpointNotFoundError,
    MethodNotAllowedError,
    PayloadTooLargeError,
    PreconditionFailedError,
    UnauthorizedError,
)
from dockyard.http.auth import BasicCredentials, BearerToken, parse_authorization
from dockyard.http.errors import harbor_error_response
from dockyard.http.state import AppState, base_url, client_address, get_state
from dockyard.iam import sessions
from dockyard.iam.policy import ANONYMOUS, Principal

API_PREFIX = "/api/v2.0"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_JSON_BYTES = 1024 * 1024

M = TypeVar("M", bound=BaseModel)
Handler = Callable[["ApiRequest"], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Operation:
    """One Harbor API operation as Dockyard implements it."""

    method: str
    path: str
    """Relative to ``/api/v2.0``, with swagger's parameter names."""
    operation_id: str | None
    """Harbor's swagger ``operationId``; ``None`` for a Dockyard-only endpoint."""
    handler: Handler
    query: tuple[str, ...] = ()
    """Query parameters the handler reads (``ApiRequest.query`` refuses others)."""
    body: type[BaseModel] | None = None
    response: Any = None
    """The response schema: a pydantic model, ``list[Model]``, or None (no body)."""
    status: int = 200
    summary: str = ""

    @property
    def starlette_paths(self) -> list[str]:
        """The path, and its twin without the trailing slash some swagger paths carry."""
        paths = [API_PREFIX + self.path]
        if self.path.endswith("/") and self.path != "/":
            paths.append(API_PREFIX + self.path.rstrip("/"))
        return paths


def operation(
    method: str,
    path: str,
    operation_id: str | None,
    *,
    query: Sequence[str] = (),
    body: type[BaseModel] | None = None,
    response: Any = None,
    status: int = 200,
) -> Callable[[Handler], Operation]:
    """Decorator: ``@operation("GET", "/projects", "listProjects", query=(...))``."""

    def wrap(handler: Handler) -> Operation:
        doc = (handler.__doc__ or "").strip().splitlines()
        return Operation(
            method.upper(),
            path,
            operation_id,
            handler,
            tuple(query),
            body,
            response,
            status,
            doc[0] if doc else "",
        )

    return wrap


@dataclass
class ApiRequest:
    """What a handler gets: the request, the app's state, the operation, the caller."""

    request: Request
    state: AppState
    operation: Operation
    _principal: Principal | None = field(default=None, init=False)

    # --- the caller -----------------------------------------------------------------

    async def principal(self) -> Principal:
        """Who is calling (Basic credentials of a user or robot, a console session, or nobody)."""
        if self._principal is None:
            self._principal = await authenticate(self.request, self.state)
        return self._principal

    async def actor(self) -> Actor:
        """The caller as the audit log names it, with its address."""
        principal = await self.principal()
        return Actor(principal.name, client_address(self.request))

    async def user(self) -> Principal:
        """The caller, who must be signed in."""
        principal = await self.principal()
        if principal.is_anonymous:
            raise UnauthorizedError("authentication required")
        return principal

    async def require(self, allowed: bool, what: str) -> None:
        """401 for an anonymous caller, 403 for a signed-in one, when ``allowed`` is false."""
        if allowed:
            return
        principal = await self.principal()
        if principal.is_anonymous:
            raise UnauthorizedError("authentication required")
        raise DeniedError(f"{principal.name} may not {what}")

    # --- input ------------------------------------------------------------------------

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])

    def path_int(self, name: str) -> int:
        raw = self.path(name)
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            raise BadRequestError(f"{name} must be a positive integer")
        return int(raw)

    def query(self, name: str) -> str | None:
        if name not in self.operation.query:
            raise AssertionError(f"{self.operation.operation_id} does not declare query {name}")
        return self.request.query_params.get(name)

    def query_bool(self, name: str, default: bool = False) -> bool:
        raw = self.query(name)
        if raw is None or raw == "":
            return default
        if raw.lower() in ("true", "1"):
            return True
        if raw.lower() in ("false", "0"):
            return False
        raise BadRequestError(f"{name} must be true or false")

    def query_int(self, name: str) -> int | None:
        raw = self.query(name)
        if raw is None or raw == "":
            return None
        text = raw[1:] if raw.startswith("-") else raw
        if not text.isascii() or not text.isdigit() or len(text) > 18:
            raise BadRequestError(f"{name} must be an integer")
        return int(raw)

    def page(self) -> PageRequest:
        return parse_page(self.query("page"), self.query("page_size"))

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    def project_ref(self) -> tuple[str, bool]:
        """The ``{project_name_or_id}`` segment and whether ``X-Is-Resource-Name`` says it
        is a name (true or 1, as Harbor reads it)."""
        flag = (self.header("X-Is-Resource-Name") or "").strip().lower()
        return self.path("project_name_or_id"), flag in ("true", "1")

    async def raw_body(self, limit: int = MAX_JSON_BYTES) -> bytes:
        length = self.request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise PayloadTooLargeError(f"request body is larger than {limit} bytes")
        body = bytearray()
        async for chunk in self.request.stream():
            body += chunk
            if len(body) > limit:
                raise PayloadTooLargeError(f"request body is larger than {limit} bytes")
        return bytes(body)

    async def json(self, model: type[M]) -> M:
        """The body validated as ``model``; any problem is a 400 that says what is wrong."""
        raw = await self.raw_body()
        if not raw.strip():
            raise BadRequestError("a JSON request body is required")
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            raise BadRequestError(_validation_message(exc)) from None

    # --- output -----------------------------------------------------------------------

    def base_url(self) -> str:
        return base_url(self.request, self.state.settings)


def _validation_message(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        problems.append(f"{where}: {error['msg']}")
    return "invalid request body: " + "; ".join(problems)


async def authenticate(request: Request, state: AppState) -> Principal:
    """The API caller: Basic credentials (users and robots), a console session, or anonymous.

    Basic credentials win over a session cookie. A state-changing request
    that rests on the session must carry the session's ``X-Harbor-CSRF-Token``;
    the session is remembered on the request so its answer can hand the token
    out (``session_response``).
    """
    credentials = parse_authorization(request.headers.get("authorization"))
    if isinstance(credentials, BearerToken):
        raise UnauthorizedError("the API takes Basic credentials or a console session")
    if isinstance(credentials, BasicCredentials):
        return await state.identity.authenticate(
            credentials.username, credentials.password, client_address(request)
        )
    cookie = request.cookies.get(sessions.SESSION_COOKIE)
    if not cookie:
        return ANONYMOUS
    timeout = timedelta(minutes=state.settings.session_timeout_minutes)
    console = await sessions.resolve_session(state.db, cookie, timeout)
    if console is None:
        return ANONYMOUS
    request.state.console_session = console
    if request.method in sessions.UNSAFE_METHODS and not console.accepts_csrf(
        request.headers.get(sessions.CSRF_HEADER)
    ):
        raise DeniedError("the CSRF token is missing or invalid")
    return console.principal


def console_session(request: Request) -> sessions.ConsoleSession | None:
    """The console session ``authenticate`` found for this request, if any."""
    found: sessions.ConsoleSession | None = getattr(request.state, "console_session", None)
    return found


def session_response(request: Request, response: Response) -> Response:
    """Hand a session's CSRF token to the console on its reads, as Harbor does."""
    console = console_session(request)
    if console is not None and request.method in ("GET", "HEAD"):
        response.headers[sessions.CSRF_HEADER] = console.csrf_token
    return response


# --- responses ---------------------------------------------------------------------------


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A model (or list/dict of models) as JSON; ``None`` fields are left out as Harbor does."""
    return JSONResponse(_dump(value), status_code=status, headers=headers)


def empty_response(status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, headers=headers)


def created_response(location: str) -> Response:
    """201 with ``Location`` (Harbor's shape for every create)."""
    return Response(status_code=201, headers={"Location": location})


def paged_response(
    api: ApiRequest, items: Sequence[Any], total: int, page: PageRequest
) -> Response:
    """A page of a listing with ``X-Total-Count`` and Harbor's ``Link`` header."""
    headers = {"X-Total-Count": str(total)}
    link = _link_header(api.request, page, total)
    if link:
        headers["Link"] = link
    return json_response(list(items), headers=headers)


def _link_header(request: Request, page: PageRequest, total: int) -> str:
    params = [
        (k, v) for k, v in request.query_params.multi_items() if k not in ("page", "page_size")
    ]
    links = []

    def url(number: int) -> str:
        query = urlencode([*params, ("page", str(number)), ("page_size", str(page.page_size))])
        return f"<{request.url.path}?{query}>"

    if page.page > 1:
        links.append(f'{url(page.page - 1)}; rel="prev"')
    if page.page * page.page_size < total:
        links.append(f'{url(page.page + 1)}; rel="next"')
    return " , ".join(links)


# --- routing -----------------------------------------------------------------------------


class ApiRoute(Route):
    """A Starlette route that remembers its ``Operation`` (for the contract test and docs)."""

    def __init__(self, op: Operation, path: str) -> None:
        self.operation = op

        async def endpoint(request: Request) -> Response:
            state = get_state(request)
            api = ApiRequest(request, state, op)
            try:
                if op.method not in _SAFE_METHODS:
                    # Authenticate every write up front, whatever the handler asks,
                    # so a session-borne write without its CSRF token never runs.
                    await api.principal()
                response = await op.handler(api)
            except AppError as exc:
                await _record_refusal(api, exc)
                response = harbor_error_response(exc, request_id(request))
            return session_response(request, response)

        super().__init__(path, endpoint, methods=[op.method])


# What a refused write was about, by the last literal segment of its path.
_RESOURCE_TYPES = {
    "projects": "project",
    "metadatas": "project",
    "members": "member",
    "robots": "robot",
    "users": "user",
    "sysadmin": "user",
    "password": "user",
    "cli_secret": "user",
    "usergroups": "user_group",
    "labels": "label",
    "repositories": "repository",
    "artifacts": "artifact",
    "tags": "tag",
    "quotas": "quota",
    "configurations": "configuration",
    "immutabletagrules": "immutable-rule",
    "registries": "registry",
}
_OPERATIONS = {"POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}


async def _record_refusal(api: ApiRequest, error: AppError) -> None:
    """A signed-in caller's write refused (403, 409, 412) leaves one failed audit event,
    unless the service or the registry seam recorded it already."""
    principal = api._principal
    if (
        api.operation.method in _SAFE_METHODS
        or error.audited
        or not isinstance(error, DeniedError | ConflictError | PreconditionFailedError)
        or principal is None
        or principal.is_anonymous
    ):
        return
    literal = [part for part in api.operation.path.split("/") if part and "{" not in part]
    resource_type = _RESOURCE_TYPES.get(literal[-1] if literal else "", "api")
    if resource_type == "label" and "artifacts" in literal:
        resource_type = "artifact-label"
    event = AuditEvent(
        _OPERATIONS[api.operation.method],
        resource_type,
        api.request.url.path.removeprefix(API_PREFIX),
        0,
        f"refused: {error.message}",
    )
    await audit.record_failure(
        api.state.db, Actor(principal.name, client_address(api.request)), event
    )
    error.audited = True


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "-"))


def api_routes(operations: Iterable[Operation]) -> list[BaseRoute]:
    """Routes for ``operations`` plus Harbor-shaped 404/405 answers for everything else."""
    routes: list[BaseRoute] = [
        ApiRoute(op, path) for op in operations for path in op.starlette_paths
    ]
    known = list(routes)

    async def unmatched(request: Request) -> Response:
        if any(r.matches(request.scope)[0] == Match.PARTIAL for r in known):
            error: AppError = MethodNotAllowedError(
                f"{request.method} is not allowed on {request.url.path}"
            )
        else:
            error = EndpointNotFoundError(f"no API endpoint {request.method} {request.url.path}")
        return harbor_error_response(error, request_id(request))

    routes.append(
        Route(
            API_PREFIX + "/{rest:path}",
            unmatched,
            methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        )
    )
    return routes


def api_operations(routes: Iterable[BaseRoute]) -> list[Operation]:
    """The operations behind an app's routes."""
    return [r.operation for r in routes if isinstance(r, ApiRoute)]

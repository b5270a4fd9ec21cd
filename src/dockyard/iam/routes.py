"""``/service/token``: the Docker token service (GET) and its OAuth2 form (POST)."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dockyard.audit import service as audit
from dockyard.audit.events import Actor
from dockyard.errors import AppError, BadRequestError, TooManyRequestsError, UnauthorizedError
from dockyard.http.auth import BearerToken, parse_authorization
from dockyard.http.errors import harbor_error_response
from dockyard.http.state import client_address, get_state
from dockyard.iam.accounts import AccountLogin
from dockyard.iam.policy import ANONYMOUS, Principal
from dockyard.oci.scope import parse_scopes

log = logging.getLogger("dockyard.iam")
_MAX_FORM_BYTES = 64 * 1024
_MAX_LOGIN_NAME = 255
# Each requested scope costs a policy decision (database reads); docker, containerd
# and buildkit ask for one to a handful (a cross-repository mount asks for two).
MAX_SCOPES = 50
# The query string of a token request is refused before it is parsed beyond this.
MAX_QUERY_BYTES = 16 * 1024


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "-"))


def _basic(request: Request) -> tuple[str, str] | None:
    credentials = parse_authorization(request.headers.get("authorization"))
    if isinstance(credentials, BearerToken):
        raise UnauthorizedError("the token service takes Basic credentials or none")
    return (credentials.username, credentials.password) if credentials else None


def _token_body(token: str, expires_in: int, issued_at: str) -> dict[str, object]:
    return {"token": token, "access_token": token, "expires_in": expires_in, "issued_at": issued_at}


async def get_token(request: Request) -> Response:
    """Docker token spec: ``GET /service/token?service=&scope=…`` with Basic or nothing."""
    state = get_state(request)
    try:
        if len(request.scope.get("query_string", b"")) > MAX_QUERY_BYTES:
            raise BadRequestError(f"the token request's query is over {MAX_QUERY_BYTES} bytes")
        requested = _capped_scopes(request.query_params.getlist("scope"))
        credentials = _basic(request)
        principal: Principal = ANONYMOUS
        account: AccountLogin | None = None
        if credentials is not None:
            account = await _password_login(request, *credentials)
            principal = account.principal
        scopes = parse_scopes(requested)
        issued = await state.identity.issue_token(principal, scopes, account)
    except AppError as exc:
        return harbor_error_response(exc, _request_id(request), _challenge_header(request, exc))
    body = _token_body(issued.token, issued.expires_in, issued.issued_at.isoformat())
    if request.query_params.get("offline_token") == "true" and not principal.is_anonymous:
        body["refresh_token"] = await state.identity.issue_refresh_token(principal)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def post_token(request: Request) -> Response:
    """OAuth2 form as containerd uses it: ``password`` and ``refresh_token`` grants."""
    state = get_state(request)
    try:
        form = await _read_form(request)
        grant = form.get("grant_type", "")
        account: AccountLogin | None = None
        if grant == "password":
            username, password = form.get("username", ""), form.get("password", "")
            if not username:
                raise BadRequestError("username is required for the password grant")
            account = await _password_login(request, username, password)
            principal = account.principal
        elif grant == "refresh_token":
            principal = await state.identity.refresh_principal(form.get("refresh_token", ""))
        else:
            raise BadRequestError("grant_type must be password or refresh_token")
        scopes = parse_scopes(_capped_scopes(form.get("scope", "").split()))
        issued = await state.identity.issue_token(principal, scopes, account)
    except AppError as exc:
        return harbor_error_response(exc, _request_id(request))
    body = _token_body(issued.token, issued.expires_in, issued.issued_at.isoformat())
    body["scope"] = form.get("scope", "")
    if grant == "refresh_token" or form.get("access_type") == "offline":
        body["refresh_token"] = await state.identity.issue_refresh_token(principal)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def _password_login(request: Request, username: str, password: str) -> AccountLogin:
    """Authenticate a user or robot by password, recording the login (never the password)
    and its failure in the audit log; the account, for the token's credential fingerprint."""
    state = get_state(request)
    actor = Actor(username, client_address(request))
    event = audit.login_event(username, "the token service")
    try:
        account = await state.identity.login(username, password, actor.source_ip)
    except (UnauthorizedError, TooManyRequestsError) as exc:
        if _recordable_login(username):
            await audit.record_failure(state.db, actor, event, reason=exc.message)
        raise
    name = account.principal.name
    if state.settings.audit_token_service_logins:
        await audit.record_alone(state.db, Actor(name, actor.source_ip), event)
    else:  # as in Harbor: a log line, not an audit event for every push and pull
        log.info("token service login of %s from %s", name, actor.source_ip)
    return account


def _capped_scopes(values: list[str]) -> list[str]:
    """``values`` unchanged, or a 400 when they hold more than MAX_SCOPES scopes."""
    if len(values) > MAX_SCOPES or sum(len(v.split()) for v in values) > MAX_SCOPES:
        raise BadRequestError(f"a token request may ask for at most {MAX_SCOPES} scopes")
    return values


def _recordable_login(name: str) -> bool:
    return 0 < len(name) <= _MAX_LOGIN_NAME and not any(ord(c) < 32 or ord(c) == 127 for c in name)


async def _read_form(request: Request) -> dict[str, str]:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > _MAX_FORM_BYTES:
        raise BadRequestError("token request form is too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            raise BadRequestError("token request form is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestError("token request form is not UTF-8") from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=64)
    except ValueError:
        raise BadRequestError("token request form has too many fields") from None
    return dict(pairs)


def _challenge_header(request: Request, exc: AppError) -> dict[str, str] | None:
    if isinstance(exc, UnauthorizedError):
        return {"WWW-Authenticate": 'Basic realm="dockyard token service"'}
    return None


def token_routes() -> list[BaseRoute]:
    return [
        Route("/service/token", get_token, methods=["GET"]),
        Route("/service/token", post_token, methods=["POST"]),
    ]

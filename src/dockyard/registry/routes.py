"""``/v2/``: the OCI distribution API (spec v1.1), thin handlers over RegistryService.

Handlers are named for the spec's operations and cite their endpoint ids
(end-1 … end-13 of the spec's endpoint table).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from dockyard.errors import (
    AppError,
    DeniedError,
    DigestInvalidError,
    EndpointNotFoundError,
    MethodNotAllowedError,
    PaginationInvalidError,
    PayloadTooLargeError,
    SizeInvalidError,
    StorageFullError,
    TooManyRequestsError,
    UnauthorizedError,
)
from dockyard.http.auth import BasicCredentials, BearerToken, parse_authorization
from dockyard.http.errors import oci_error_response
from dockyard.http.state import AppState, base_url, client_address, get_state
from dockyard.iam.policy import ANONYMOUS, Action, Principal, Resource, can
from dockyard.iam.service import CATALOG
from dockyard.iam.tokens import TokenClaims
from dockyard.oci import mediatypes as mt
from dockyard.oci.manifest import MAX_MANIFEST_BYTES
from dockyard.oci.names import validate_repository_name
from dockyard.oci.ranges import format_upload_range, parse_content_range, parse_range_request
from dockyard.oci.scope import format_challenge_scope
from dockyard.registry.hooks import AccessRefused, Actor
from dockyard.registry.pull_through import UpstreamBlob
from dockyard.registry.service import BlobInfo, ManifestContent, UploadRangeError, UploadStatus

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}
_MAX_PAGE = 10_000
# A refused request's unread body up to this size is drained to keep the connection.
_DRAIN_LIMIT = 1024 * 1024
# ...and the rest of a chunk refused because the disk is full, so the client sees why.
_FULL_DISK_DRAIN_LIMIT = 1024 * 1024 * 1024

Handler = Callable[[Request, str, dict[str, str]], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a principal (Basic or anonymous) or a verified token."""

    principal: Principal
    claims: TokenClaims | None = None


class _AccessRefused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


# --- access -------------------------------------------------------------------------


async def _caller(request: Request, state: AppState) -> Caller:
    credentials = parse_authorization(request.headers.get("authorization"))
    if isinstance(credentials, BearerToken):
        return Caller(ANONYMOUS, state.tokens.verify(credentials.token))
    if isinstance(credentials, BasicCredentials):
        principal = await state.identity.authenticate(
            credentials.username, credentials.password, client_address(request)
        )
        return Caller(principal)
    return Caller(ANONYMOUS)


def _actor(request: Request, caller: Caller) -> Actor:
    """Who the audit log and the policies see: the user, robot or token subject."""
    name = caller.principal.name
    if caller.principal.is_anonymous and caller.claims is not None and caller.claims.subject:
        name = caller.claims.subject
    return Actor(name, client_address(request))


def _challenge(request: Request, state: AppState, scope: str | None, error: str | None) -> str:
    if state.settings.auth_challenge == "basic":
        return f'Basic realm="{state.settings.token_service}"'
    parts = [
        f'realm="{base_url(request, state.settings)}/service/token"',
        f'service="{state.settings.token_service}"',
    ]
    if scope:
        parts.append(f'scope="{scope}"')
    if error:
        parts.append(f'error="{error}"')
    return "Bearer " + ",".join(parts)


def _refuse_unauthenticated(
    request: Request, state: AppState, message: str, scope: str | None, error: str | None = None
) -> _AccessRefused:
    headers = {"WWW-Authenticate": _challenge(request, state, scope, error)}
    return _AccessRefused(
        oci_error_response(UnauthorizedError(message), _request_id(request), headers)
    )


async def _authorize(
    request: Request,
    state: AppState,
    name: str,
    actions: tuple[str, ...],
    also_challenge: str | None = None,
) -> Caller:
    """Allow the request or raise _AccessRefused with the right 401/403.

    ``also_challenge`` is a further scope a 401 challenge names beside this
    request's own (a mount's ``repository:<from>:pull``), so that the token a
    client fetches by following the challenge covers it too.
    """
    challenge_scope = format_challenge_scope(name, actions)
    if also_challenge:
        challenge_scope = f"{challenge_scope} {also_challenge}"
    try:
        caller = await _caller(request, state)
    except UnauthorizedError as exc:
        raise _refuse_unauthenticated(
            request, state, exc.message, challenge_scope, "invalid_token"
        ) from None
    if caller.claims is not None:
        missing = [a for a in actions if not caller.claims.allows("repository", name, a)]
        if missing:
            who = Actor(caller.claims.subject or ANONYMOUS.name, client_address(request))
            granted = f"the token does not grant {', '.join(missing)} on {name}"
            state.registry.hooks.access_refused(AccessRefused(who, name, tuple(missing), granted))
            # Harbor's wording, which scripts match: the first missing action, named singly.
            raise _refuse_unauthenticated(
                request,
                state,
                f"unauthorized to access repository: {name}, action: {missing[0]}",
                challenge_scope,
                "insufficient_scope",
            )
        created = await state.registry.project_creation_time(name)
        if created is not None and caller.claims.issued_at < created.replace(microsecond=0):
            # Harbor's rule: a token must not outlive a delete-and-recreate of its project.
            raise _refuse_unauthenticated(
                request,
                state,
                f"the token was issued before project {name.split('/', 1)[0]} was created; "
                "request a new token",
                challenge_scope,
                "invalid_token",
            )
        # A token is only as good as the account and the rights it was issued from.
        refusal = await state.identity.recheck(caller.claims, name, actions)
        if refusal is not None:
            raise _refuse_unauthenticated(
                request, state, refusal, format_challenge_scope(name, actions), "invalid_token"
            )
        return caller
    principal = caller.principal
    allowed = await state.identity.repository_actions(principal, name, set(actions))
    if allowed.issuperset(actions):
        return caller
    if principal.is_anonymous:
        raise _refuse_unauthenticated(request, state, "authentication required", challenge_scope)
    denied = DeniedError(f"{principal.name} may not {'/'.join(actions)} {name}")
    who = Actor(principal.name, client_address(request))
    refused = tuple(a for a in actions if a not in allowed)
    state.registry.hooks.access_refused(AccessRefused(who, name, refused, denied.message))
    raise _AccessRefused(oci_error_response(denied, _request_id(request)))


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "-"))


# --- helpers ---------------------------------------------------------------------------


def _upload_location(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def _upload_headers(
    request: Request, state: AppState, name: str, status: UploadStatus
) -> dict[str, str]:
    return {
        "Location": base_url(request, state.settings) + _upload_location(name, status.upload_id),
        "Range": format_upload_range(status.size),
        "Docker-Upload-UUID": status.upload_id,
        **API_VERSION_HEADER,
    }


def _blob_created(request: Request, state: AppState, name: str, blob: BlobInfo) -> Response:
    headers = {
        "Location": f"{base_url(request, state.settings)}/v2/{name}/blobs/{blob.digest}",
        "Docker-Content-Digest": blob.digest,
        **API_VERSION_HEADER,
    }
    return Response(status_code=201, headers=headers)


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise SizeInvalidError("Content-Length must be a non-negative integer")
    return int(value)


def _has_body(request: Request) -> bool:
    length = _content_length(request)
    if length is not None:
        return length > 0
    return "chunked" in request.headers.get("transfer-encoding", "").lower()


async def _body_stream(request: Request) -> AsyncIterator[bytes]:
    state = request.scope.setdefault("state", {})
    state["body"] = "started"
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
        state["body"] = "read"
    except ClientDisconnect:
        raise SizeInvalidError("the client closed the connection before the body ended") from None


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = _content_length(request)
    if declared is not None and declared > limit:
        raise PayloadTooLargeError(f"manifest is {declared} bytes; the limit is {limit} bytes")
    parts: list[bytes] = []
    total = 0
    async for chunk in _body_stream(request):
        total += len(chunk)
        if total > limit:
            raise PayloadTooLargeError(f"manifest is larger than the {limit}-byte limit")
        parts.append(chunk)
    return b"".join(parts)


def _page(request: Request) -> tuple[int | None, str | None]:
    raw_n = request.query_params.get("n")
    last = request.query_params.get("last") or None
    if last is not None and "\x00" in last:
        raise PaginationInvalidError("last must not contain NUL characters")
    if raw_n is None or raw_n == "":
        return None, last
    if not (raw_n.isascii() and raw_n.isdigit()):
        raise PaginationInvalidError(f"n must be a non-negative integer, not {raw_n[:20]!r}")
    return min(int(raw_n), _MAX_PAGE), last


def _one_more(n: int | None) -> int | None:
    """The page size to ask the service for: one beyond ``n``, to learn if a next page exists."""
    return None if n is None else n + 1


def _next_link(path: str, n: int | None, items: list[str]) -> tuple[list[str], dict[str, str]]:
    """The page (``items`` fetched with :func:`_one_more`) and its ``Link`` header, if any."""
    if n is None or len(items) <= n:
        return items, {}
    items = items[:n]
    query = urlencode({"n": n, "last": items[-1]})
    return items, {"Link": f'<{path}?{query}>; rel="next"'}


# --- handlers ----------------------------------------------------------------------------


async def api_version_check(request: Request) -> Response:
    """end-1: ``GET /v2/`` — 200 for an authenticated caller, else a 401 challenge."""
    state = get_state(request)
    try:
        caller = await _caller(request, state)
    except UnauthorizedError as exc:
        headers = {"WWW-Authenticate": _challenge(request, state, None, "invalid_token")}
        return oci_error_response(exc, _request_id(request), headers)
    except TooManyRequestsError as exc:  # no dispatch() around this route: 429, Retry-After
        return oci_error_response(exc, _request_id(request))
    if caller.claims is None and caller.principal.is_anonymous:
        headers = {"WWW-Authenticate": _challenge(request, state, None, None)}
        return oci_error_response(
            UnauthorizedError("authentication required"), _request_id(request), headers
        )
    if caller.claims is not None:
        refusal = await state.identity.recheck(caller.claims, None, ())
        if refusal is not None:
            headers = {"WWW-Authenticate": _challenge(request, state, None, "invalid_token")}
            return oci_error_response(UnauthorizedError(refusal), _request_id(request), headers)
    return JSONResponse({}, headers=API_VERSION_HEADER)


async def catalog(request: Request) -> Response:
    """``GET /v2/_catalog`` (distribution extension): repositories in lexical order."""
    state = get_state(request)
    try:
        caller = await _caller(request, state)
    except UnauthorizedError as exc:
        headers = {"WWW-Authenticate": _challenge(request, state, "registry:catalog:*", None)}
        return oci_error_response(exc, _request_id(request), headers)
    except TooManyRequestsError as exc:
        return oci_error_response(exc, _request_id(request))
    allowed = (
        caller.claims.allows("registry", "catalog", "*")
        and await state.identity.recheck(caller.claims, None, (CATALOG,)) is None
        if caller.claims is not None
        else can(caller.principal, Action.READ, Resource.CATALOG, None)
    )
    if not allowed:
        if caller.claims is None and not caller.principal.is_anonymous:
            return oci_error_response(
                DeniedError(
                    "only system administrators and robots granted catalog:read "
                    "may list the catalog"
                ),
                _request_id(request),
            )
        headers = {"WWW-Authenticate": _challenge(request, state, "registry:catalog:*", None)}
        return oci_error_response(
            UnauthorizedError("authentication required"), _request_id(request), headers
        )
    try:
        n, last = _page(request)
    except PaginationInvalidError as exc:  # no dispatch() around this route to render it
        return oci_error_response(exc, _request_id(request))
    names = [] if n == 0 else await state.registry.catalog(_one_more(n), last)
    names, link = _next_link("/v2/_catalog", n, names)
    headers = {**API_VERSION_HEADER, **link}
    return JSONResponse({"repositories": names}, headers=headers)


async def get_blob(request: Request, name: str, params: dict[str, str]) -> Response:
    """end-2: ``GET``/``HEAD /v2/<name>/blobs/<digest>`` with ``Range`` support."""
    state = get_state(request)
    await _authorize(request, state, name, ("pull",))
    held = None
    if state.registry.pull_through is not None:
        # A whole GET of a blob a proxy cache lacks is streamed as it arrives; a HEAD or
        # a range waits until it is stored and is answered from the cache. A blob the
        # cache holds comes back as the seam found it (one lookup, not two).
        whole = request.method == "GET" and "range" not in request.headers
        upstream = await state.registry.pull_through.blob(name, params["digest"], stream=whole)
        if isinstance(upstream, UpstreamBlob):
            headers = {"Docker-Content-Digest": upstream.digest, **API_VERSION_HEADER}
            if upstream.size is not None:
                headers["Content-Length"] = str(upstream.size)
            return StreamingResponse(
                upstream.chunks, headers=headers, media_type="application/octet-stream"
            )
        held = upstream
    blob = held or await state.registry.stat_blob(name, params["digest"])
    headers = {"Docker-Content-Digest": blob.digest, "Accept-Ranges": "bytes", **API_VERSION_HEADER}
    if request.method == "HEAD":
        headers["Content-Length"] = str(blob.size)
        return Response(status_code=200, headers=headers, media_type="application/octet-stream")
    requested = request.headers.get("range")
    span = parse_range_request(requested, blob.size) if requested else None
    path = state.registry.blob_path(blob)
    if path is not None and requested is None:
        # A whole file goes by pathsend when the server supports it. Ranges are ours
        # to answer: Starlette's would refuse (400, plain text) headers the spec lets
        # us ignore, and answer several ranges as multipart.
        headers["Content-Length"] = str(blob.size)
        return _BlobFileResponse(str(path), lambda: state.registry.read_blob(blob), headers)
    redirect = await state.registry.blob_redirect(blob)
    if redirect is not None:
        return Response(status_code=307, headers={"Location": redirect, **headers})
    if span is None:
        headers["Content-Length"] = str(blob.size)
        return StreamingResponse(
            await state.registry.read_blob(blob),
            headers=headers,
            media_type="application/octet-stream",
        )
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
    headers["Content-Length"] = str(end - start + 1)
    return StreamingResponse(
        await state.registry.read_blob(blob, start, end - start + 1),
        status_code=206,
        headers=headers,
        media_type="application/octet-stream",
    )


class _BlobFileResponse(Response):
    """A whole blob in a local file: the server sends the file itself where it can
    (ASGI ``http.response.pathsend``: Granian reads and sends it, no Python per
    chunk); elsewhere the bytes ``content()`` opens are streamed.

    Unlike Starlette's FileResponse it does not stat the file in a worker thread
    on every GET (a thread hop and a GIL hand-off each time): the length is the
    blob's, from the database, and the path came from the storage driver. The
    stream is opened only when it is needed.
    """

    def __init__(
        self,
        path: str,
        content: Callable[[], Awaitable[AsyncIterator[bytes]]],
        headers: dict[str, str],
    ) -> None:
        super().__init__(headers=headers, media_type="application/octet-stream")
        self.path = path
        self.content = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if "http.response.pathsend" not in scope.get("extensions", {}):
            streamed = StreamingResponse(await self.content(), headers=dict(self.headers.items()))
            await streamed(scope, receive, send)
            return
        start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
        await send(start)
        await send({"type": "http.response.pathsend", "path": self.path})


async def delete_blob(request: Request, name: str, params: dict[str, str]) -> Response:
    """end-10: ``DELETE /v2/<name>/blobs/<digest>`` — unlinks it from the repository."""
    state = get_state(request)
    await _authorize(request, state, name, ("delete",))
    await state.registry.delete_blob(name, params["digest"])
    return Response(status_code=202, headers=API_VERSION_HEADER)


async def start_upload(request: Request, name: str, params: dict[str, str]) -> Response:
    """end-4a/4b/11: ``POST /v2/<name>/blobs/uploads/`` (session, monolithic, or mount)."""
    state = get_state(request)
    query = request.query_params
    mount, source = query.get("mount"), query.get("from")
    caller = await _authorize(
        request, state, name, ("pull", "push"), _mount_source_scope(name, mount, source)
    )
    await _refuse_proxy_write(state, name)
    actor = _actor(request, caller)
    if mount and source:
        blob = await _try_mount(request, state, name, mount, source, actor)
        if blob is not None:
            return _blob_created(request, state, name, blob)
    digest = query.get("digest")
    if digest:
        blob = await state.registry.upload_monolithic(
            name, digest, _body_stream(request), _content_length(request), actor
        )
        return _blob_created(request, state, name, blob)
    status = await state.registry.start_upload(name)
    headers = _upload_headers(request, state, name, status)
    headers["Content-Length"] = "0"
    return Response(status_code=202, headers=headers)


async def _refuse_proxy_write(state: AppState, name: str) -> None:
    """Pushes into a proxy cache project are refused (403 ``DENIED``), as in Harbor."""
    if state.registry.pull_through is not None:
        await state.registry.pull_through.refuse_write(name)


def _mount_source_scope(name: str, mount: str | None, source: str | None) -> str | None:
    """``repository:<from>:pull`` for a mount from another valid repository, else ``None``."""
    if not mount or not source:
        return None
    try:
        source = validate_repository_name(source)
    except AppError:
        return None
    return None if source == name else format_challenge_scope(source, ("pull",))


async def _try_mount(
    request: Request, state: AppState, name: str, digest: str, source: str, actor: Actor
) -> BlobInfo | None:
    try:
        source = validate_repository_name(source)
        await _authorize(request, state, source, ("pull",))
    except (_AccessRefused, AppError):
        return None  # the spec's answer: fall back to an ordinary upload session
    return await state.registry.mount_blob(name, digest, source, actor)


async def upload_status(request: Request, name: str, params: dict[str, str]) -> Response:
    """end-13: ``GET /v2/<name>/blobs/uploads/<reference>``."""
    state = get_state(request)
    await _authorize(request, state, name, ("push",))
    status = await state.registry.upload_status(name, params["upload_id"])
    return Response(status_code=204, headers=_upload_headers(request, state, name, status))


def _chunk_span(request: Request) -> tuple[int | None, int | None]:
    header = request.headers.get("content-range")
    if not header:
        return None, _content_length(request)
    start, end = parse_content_range(header)
    return start, end - start + 1


async def patch_upload(request: Request, name: str, params: dict[str, str]) -> Response:
    """end-5: ``PATCH /v2/<name>/blobs/uploads/<reference>`` — one chunk."""
    state = get_state(request)
    await _authorize(request, state, name, ("push",))
    start, length = _chunk_span(request)
    status = await state.registry.append_upload(
        name, params["upload_id"], _body_stream(request), start, length
    )
    return Response(status_code=202, headers=_upload_headers(request, state, name, status))


async def put_upload(request: Request, name: str, params: dict[str, str]) -> Response:
    """end-6: ``PUT /v2/<name>/blobs/uploads/<reference>?digest=`` — close the upload."""
    state = get_state(request)
    caller = await _authorize(request, state, name, ("push",))
    digest = request.query_params.get("digest")
    if not digest:
        raise DigestInvalidError("the digest query parameter is required to close an upload")
    chunks = _body_stream(request) if _has_body(request) else None
    start, length = _chunk_span(request) if chunks is not None else (None, None)
    blob = await state.registry.complete_upload(
        name, params["upload_id"], digest, chunks, start, length, _actor(request, caller)
    )
    return _blob_created(request, state, name, blob)


async def delete_upload(request: Request, name: str, params: dict[str, str]) -> Response:
    """``DELETE /v2/<name>/blobs/uploads/<reference>`` — cancel the upload."""
    state = get_state(request)
    await _authorize(request, state, name, ("push",))
    await state.registry.cancel_upload(name, params["upload_id"])
    return Response(status_code=204, headers=API_VERSION_HEADER)


async def get_manifest(request: Request, name: str, params: dict[str, str]) -> Response:
    """end-3: ``GET``/``HEAD /v2/<name>/manifests/<reference>``."""
    state = get_state(request)
    caller = await _authorize(request, state, name, ("pull",))
    # Harbor's scanner credential: a token naming scanner-pull passes the pull policies.
    scanner = _token_names(caller, name, "scanner-pull")
    signer = await _signing_client(request, state, caller, name)
    fetched = None
    if state.registry.pull_through is not None:
        fetched = await state.registry.pull_through.manifest(name, params["reference"])
    if fetched is not None:  # from a proxy cache's upstream, stored behind this answer
        await state.registry.check_pull(
            name, fetched.digest, params["reference"], scanner_pull=scanner, signer_pull=signer
        )
        manifest = ManifestContent(fetched.digest, fetched.media_type, fetched.body)
    else:
        manifest = await state.registry.get_manifest(
            name, params["reference"], policies=True, scanner_pull=scanner, signer_pull=signer
        )
    headers = {
        "Docker-Content-Digest": manifest.digest,
        "ETag": f'"{manifest.digest}"',
        **API_VERSION_HEADER,
    }
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(manifest.body))
        return Response(status_code=200, headers=headers, media_type=manifest.media_type)
    state.registry.record_pull(_actor(request, caller), name, manifest.digest, params["reference"])
    return Response(manifest.body, headers=headers, media_type=manifest.media_type)


_SIGNING_AGENTS = ("cosign", "notation", "dockyard-sign")


async def _signing_client(request: Request, state: AppState, caller: Caller, name: str) -> bool:
    """Harbor's signer exemption from content trust: a client that names itself a signer
    (User-Agent) and may push the repository may read the manifest it is about to sign.
    Harbor grants it to tokens; Dockyard's ``/v2/`` also takes Basic credentials, so a
    Basic caller who may push gets it too (the same right, asked of ``can()``)."""
    if not state.settings.content_trust_signer_pull:
        return False
    agent = request.headers.get("user-agent", "").lower()
    if not any(signer in agent for signer in _SIGNING_AGENTS):
        return False
    if caller.claims is not None:
        return caller.claims.allows("repository", name, "push")
    if caller.principal.is_anonymous:
        return False
    allowed = await state.identity.repository_actions(caller.principal, name, {"push"})
    return "push" in allowed


def _token_names(caller: Caller, name: str, action: str) -> bool:
    """Whether the caller's token names ``action`` on repository ``name`` (a ``*`` grant
    does not count, so an administrator's token is checked like any other)."""
    return caller.claims is not None and any(
        s.type == "repository" and s.name == name and action in s.actions
        for s in caller.claims.access
    )


async def put_manifest(request: Request, name: str, params: dict[str, str]) -> Response:
    """end-7: ``PUT /v2/<name>/manifests/<reference>``."""
    state = get_state(request)
    caller = await _authorize(request, state, name, ("pull", "push"))
    await _refuse_proxy_write(state, name)
    body = await _read_limited(request, MAX_MANIFEST_BYTES)
    pushed = await state.registry.put_manifest(
        name,
        params["reference"],
        body,
        request.headers.get("content-type"),
        _actor(request, caller),
    )
    headers = {
        "Location": f"{base_url(request, state.settings)}/v2/{name}/manifests/{pushed.digest}",
        "Docker-Content-Digest": pushed.digest,
        **API_VERSION_HEADER,
    }
    if pushed.subject is not None:
        headers["OCI-Subject"] = pushed.subject
    return Response(status_code=201, headers=headers)


async def delete_manifest(request: Request, name: str, params: dict[str, str]) -> Response:
    """end-9 (by digest) and end-9 tag deletion: ``DELETE /v2/<name>/manifests/<reference>``."""
    state = get_state(request)
    caller = await _authorize(request, state, name, ("delete",))
    await state.registry.delete_manifest(name, params["reference"], _actor(request, caller))
    return Response(status_code=202, headers=API_VERSION_HEADER)


async def list_tags(request: Request, name: str, params: dict[str, str]) -> Response:
    """end-8a/8b: ``GET /v2/<name>/tags/list?n=&last=``."""
    state = get_state(request)
    await _authorize(request, state, name, ("pull",))
    n, last = _page(request)
    tags = await state.registry.list_tags(name, _one_more(n), last)
    if n == 0:
        tags = []
    tags, link = _next_link(f"/v2/{name}/tags/list", n, tags)
    headers = {**API_VERSION_HEADER, **link}
    return JSONResponse({"name": name, "tags": tags}, headers=headers)


async def list_referrers(request: Request, name: str, params: dict[str, str]) -> Response:
    """end-12a/12b: ``GET /v2/<name>/referrers/<digest>?artifactType=``."""
    state = get_state(request)
    await _authorize(request, state, name, ("pull",))
    artifact_type = request.query_params.get("artifactType") or None
    manifests = await state.registry.referrers(name, params["digest"], artifact_type)
    headers = dict(API_VERSION_HEADER)
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    return JSONResponse(body, headers=headers, media_type=mt.OCI_INDEX)


# --- dispatch --------------------------------------------------------------------------------

_ROUTES: tuple[tuple[re.Pattern[str], dict[str, Handler]], ...] = (
    (
        re.compile(r"(?P<name>.+)/blobs/uploads/?"),
        {"POST": start_upload},
    ),
    (
        re.compile(r"(?P<name>.+)/blobs/uploads/(?P<upload_id>[^/]+)"),
        {"GET": upload_status, "PATCH": patch_upload, "PUT": put_upload, "DELETE": delete_upload},
    ),
    (
        re.compile(r"(?P<name>.+)/blobs/(?P<digest>[^/]+)"),
        {"GET": get_blob, "HEAD": get_blob, "DELETE": delete_blob},
    ),
    (
        re.compile(r"(?P<name>.+)/manifests/(?P<reference>[^/]+)"),
        {"GET": get_manifest, "HEAD": get_manifest, "PUT": put_manifest, "DELETE": delete_manifest},
    ),
    (re.compile(r"(?P<name>.+)/tags/list"), {"GET": list_tags}),
    (re.compile(r"(?P<name>.+)/referrers/(?P<digest>[^/]+)"), {"GET": list_referrers}),
)


# Paths with routes of their own, reaching ``dispatch`` only with a method they lack.
_FIXED_PATHS = {"": "GET, HEAD", "_catalog": "GET"}


async def dispatch(request: Request) -> Response:
    # From the raw scope: the route pattern's "$" would let a trailing newline
    # (``…/manifests/v1%0A``) slip off the end of the path parameter.
    full_path: str = request.scope["path"]
    path = full_path[len("/v2/") :] if full_path.startswith("/v2/") else ""
    request_id = _request_id(request)
    if path in _FIXED_PATHS:
        return oci_error_response(
            MethodNotAllowedError(f"{request.method} is not supported here"),
            request_id,
            {"Allow": _FIXED_PATHS[path]},
        )
    for pattern, handlers in _ROUTES:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        handler = handlers.get(request.method)
        if handler is None:
            return oci_error_response(
                MethodNotAllowedError(f"{request.method} is not supported here"),
                request_id,
                {"Allow": ", ".join(sorted(handlers))},
            )
        params = match.groupdict()
        try:
            name = validate_repository_name(params.pop("name"))
            return await handler(request, name, params)
        except _AccessRefused as refused:
            return await _without_unread_body(request, refused.response)
        except UploadRangeError as exc:
            status = UploadStatus(exc.upload_id, exc.size)
            headers = _upload_headers(request, get_state(request), name, status)
            return await _without_unread_body(request, oci_error_response(exc, request_id, headers))
        except StorageFullError as exc:
            # Clients (Go's HTTP client: skopeo, podman, docker) that are still sending a
            # chunk often miss an answer sent before they finish ("broken pipe"), and this
            # one tells the operator what is wrong: read the rest (to a limit) first.
            response = oci_error_response(exc, request_id)
            return await _without_unread_body(request, response, _FULL_DISK_DRAIN_LIMIT)
        except AppError as exc:
            return await _without_unread_body(request, oci_error_response(exc, request_id))
    return oci_error_response(
        EndpointNotFoundError(f"no registry endpoint at /v2/{quote(path)[:200]}"), request_id
    )


async def _without_unread_body(
    request: Request, response: Response, limit: int = _DRAIN_LIMIT
) -> Response:
    """Keep the connection usable after an early error answer.

    A request refused before its body was read leaves the body on the wire.
    A small one (up to ``limit`` bytes) is read and dropped so the client may
    reuse the connection; a large one (a refused 1 GiB push) is not worth
    reading: the connection is closed instead, and the response says so. A body
    cut short midway is drained only when ``limit`` is raised for it.
    """
    progress = request.scope.get("state", {}).get("body")
    if progress == "started" and limit <= _DRAIN_LIMIT:
        response.headers["Connection"] = "close"  # the rest cannot be skipped cheaply
        return response
    if progress == "read" or not _has_unread_body(request):
        return response
    declared = request.headers.get("content-length", "")
    if (
        progress != "started"
        and declared.isascii()
        and declared.isdigit()
        and int(declared) > limit
    ):
        response.headers["Connection"] = "close"
        return response
    drained = 0
    try:
        async for chunk in request.stream():
            drained += len(chunk)
            if drained > limit:
                response.headers["Connection"] = "close"
                break
    except (RuntimeError, ClientDisconnect):  # consumed meanwhile, or the client left
        pass
    return response


def _has_unread_body(request: Request) -> bool:
    declared = request.headers.get("content-length")
    if declared is not None:
        return declared != "0"
    return "chunked" in request.headers.get("transfer-encoding", "").lower()


async def registry_endpoint(request: Request) -> Response:
    """Every ``/v2`` request: the base and catalog endpoints, then the repository ones."""
    path = request.scope["path"]
    if path in ("/v2", "/v2/") and request.method in ("GET", "HEAD"):
        return await api_version_check(request)
    if path == "/v2/_catalog" and request.method == "GET":
        return await catalog(request)
    return await dispatch(request)


class RegistryFace:
    """ASGI middleware that answers ``/v2`` itself, ahead of the router.

    Starlette's router, exception middleware and endpoint wrapper cost about a
    quarter of a manifest GET; the registry needs none of them (its errors are
    AppErrors rendered here, and anything else meets the request-context
    middleware's last-resort 500). Everything else goes on to the app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/v2" or path.startswith("/v2/")):
            response = await registry_endpoint(Request(scope, receive, send))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

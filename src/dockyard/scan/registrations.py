"""Scanner registrations (Harbor's ``/scanners``) and the scanner each project uses.

The system admin registers adapters; each keeps its sign-in (``auth`` and
``access_credential``) sealed with the settings secret box and never shows the
credential again. One registration is the default (the first one registered becomes
it); a project uses the default unless its admin picked another. A disabled
registration is neither offered to projects nor used to scan.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import ColumnElement, Select, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.listing import PageRequest, apply_q, fetch_page, parse_q, parse_sort
from dockyard.errors import (
    AlreadyExistsError,
    BadRequestError,
    NotFoundError,
    UnprocessableError,
)
from dockyard.http.egress import EgressPolicy, EgressRefused, parse_ip
from dockyard.iam.policy import Action, Principal, Resource
from dockyard.projects.models import Project
from dockyard.projects.service import require, resolve_project, safe_text
from dockyard.scan import schemas
from dockyard.scan.client import AUTH_KINDS, Endpoint
from dockyard.scan.models import ProjectScanner, ScannerRegistration
from dockyard.system import secretbox

_MAX_NAME = 255
_MAX_DESCRIPTION = 1024
_MAX_URL = 2048
_MAX_CREDENTIAL = 4096
_COLUMNS: dict[str, ColumnElement[Any]] = {
    "name": ScannerRegistration.name.expression,
    "description": ScannerRegistration.description.expression,
    "url": ScannerRegistration.url.expression,
    "uuid": ScannerRegistration.uuid.expression,
    "is_default": ScannerRegistration.is_default.expression,
    "disabled": ScannerRegistration.disabled.expression,
    "create_time": ScannerRegistration.creation_time.expression,
    "update_time": ScannerRegistration.update_time.expression,
}


class ScannerNotFoundError(NotFoundError):
    pass


class NoScannerError(UnprocessableError):
    """The project has no usable scanner (none registered, or the chosen one is disabled)."""


# --- views and checks ----------------------------------------------------------------------


def is_key(value: str) -> bool:
    """Whether ``value`` can be a uuid or report id (64 printable ASCII characters at most):
    anything else names nothing, and never reaches the database (a NUL would fail there)."""
    return len(value) <= 64 and value.isascii() and value.isprintable()


def registration_view(row: ScannerRegistration) -> schemas.ScannerRegistration:
    return schemas.ScannerRegistration(
        uuid=row.uuid,
        name=row.name,
        description=row.description,
        url=row.url,
        disabled=row.disabled,
        is_default=row.is_default,
        auth=row.auth,
        access_credential="",
        skip_certVerify=row.skip_cert_verify,
        use_internal_addr=row.use_internal_addr,
        create_time=row.creation_time,
        update_time=row.update_time,
    )


def _text(value: str | None, what: str, limit: int, *, required: bool = False) -> str:
    text = safe_text((value or "").strip(), what)
    if required and not text:
        raise BadRequestError(f"{what} is required")
    if len(text) > limit:
        raise BadRequestError(f"{what} is longer than {limit} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text.replace("\n", "").replace("\t", "")):
        raise BadRequestError(f"{what} must not contain control characters")
    return text


def check_url(value: str | None, egress: EgressPolicy) -> str:
    """An absolute http(s) URL with a host that the egress policy does not refuse by name
    or literal address (names are checked again on every call, after resolving)."""
    text = _text(value, "url", _MAX_URL, required=True)
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError):
        raise BadRequestError("url is not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise BadRequestError("url must be an http:// or https:// URL with a host")
    if url.query or url.fragment or url.userinfo:
        raise BadRequestError("url must not carry a query, a fragment or credentials")
    host = url.host
    try:
        egress.check_host(host)
        literal = parse_ip(host)
        if literal is not None:
            egress.check_address(literal, host)
    except EgressRefused as exc:
        raise BadRequestError(f"url: {exc}") from None
    return text.rstrip("/")


def check_auth(auth: str | None, credential: str | None) -> tuple[str, str]:
    kind = (auth or "").strip()
    if kind not in AUTH_KINDS:
        raise BadRequestError(
            f"auth must be empty or one of {', '.join(k for k in AUTH_KINDS if k)}"
        )
    secret = credential or ""
    if len(secret) > _MAX_CREDENTIAL:
        raise BadRequestError(f"access_credential is longer than {_MAX_CREDENTIAL} characters")
    if secret and (not secret.isascii() or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in secret)):
        raise BadRequestError("access_credential must be printable ASCII (it is sent as a header)")
    if kind == "Basic" and secret and ":" not in secret:
        raise BadRequestError("access_credential for Basic auth is user:password")
    return kind, secret


def endpoint_of(row: ScannerRegistration, credential: str) -> Endpoint:
    return Endpoint(
        url=row.url, auth=row.auth, credential=credential, skip_cert_verify=row.skip_cert_verify
    )


async def endpoint(session: AsyncSession, row: ScannerRegistration) -> Endpoint:
    """Where ``row`` is, with its credential opened (for a call about to be made)."""
    return endpoint_of(row, await secretbox.open_sealed(session, row.access_credential))


# --- the system's registrations ------------------------------------------------------------


def _require_system(principal: Principal, action: Action) -> None:
    require(principal, action, Resource.SCANNER, None)


async def find_by_uuid(session: AsyncSession, registration_id: str) -> ScannerRegistration | None:
    if not is_key(registration_id):
        return None
    found: ScannerRegistration | None = await session.scalar(
        select(ScannerRegistration).where(ScannerRegistration.uuid == registration_id)
    )
    return found


async def get_registration(session: AsyncSession, registration_id: str) -> ScannerRegistration:
    row = await find_by_uuid(session, registration_id)
    if row is None:
        raise ScannerNotFoundError(f"scanner registration {registration_id[:64]!r} not found")
    return row


async def list_registrations(
    session: AsyncSession, principal: Principal, q: str | None, sort: str | None, page: PageRequest
) -> tuple[list[schemas.ScannerRegistration], int]:
    """``listScanners`` (``q``/``sort``: name, description, url, uuid, is_default, disabled,
    create_time, update_time)."""
    _require_system(principal, Action.LIST)
    base: Select[Any] = select(ScannerRegistration)
    stmt = apply_q(base, parse_q(q), _COLUMNS)
    order = parse_sort(sort, _COLUMNS)
    rows, total = await fetch_page(session, stmt, page, order, ScannerRegistration.id.expression)
    return [registration_view(row[0]) for row in rows], total


async def show_registration(
    session: AsyncSession, principal: Principal, registration_id: str
) -> schemas.ScannerRegistration:
    _require_system(principal, Action.READ)
    return registration_view(await get_registration(session, registration_id))


async def _check_name_free(session: AsyncSession, name: str, keep: int | None) -> None:
    stmt = select(ScannerRegistration.id).where(ScannerRegistration.name == name)
    if keep is not None:
        stmt = stmt.where(ScannerRegistration.id != keep)
    if await session.scalar(stmt) is not None:
        raise AlreadyExistsError(f"a scanner named {name!r} is already registered")


async def create_registration(
    session: AsyncSession,
    principal: Principal,
    body: schemas.ScannerRegistrationReq,
    egress: EgressPolicy,
) -> str:
    """``createScanner``; the new registration's uuid. The first one becomes the default."""
    _require_system(principal, Action.CREATE)
    name = _text(body.name, "name", _MAX_NAME, required=True)
    url = check_url(body.url, egress)
    auth, credential = check_auth(body.auth, body.access_credential)
    if auth and not credential:
        raise BadRequestError(f"access_credential is required for auth {auth}")
    await _check_name_free(session, name, None)
    has_default = await session.scalar(
        select(func.count())
        .select_from(ScannerRegistration)
        .where(ScannerRegistration.is_default.is_(True))
    )
    row = ScannerRegistration(
        uuid=str(uuid.uuid4()),
        name=name,
        description=_text(body.description, "description", _MAX_DESCRIPTION),
        url=url,
        auth=auth,
        access_credential=await secretbox.seal(session, credential),
        disabled=bool(body.disabled),
        is_default=not has_default and not body.disabled,
        skip_cert_verify=bool(body.skip_certVerify),
        use_internal_addr=bool(body.use_internal_addr),
    )
    session.add(row)
    await session.flush()
    return row.uuid


async def update_registration(
    session: AsyncSession,
    principal: Principal,
    registration_id: str,
    body: schemas.ScannerRegistrationReq,
    egress: EgressPolicy,
) -> None:
    """``updateScanner``: the whole registration is replaced; an empty credential keeps the
    stored one while ``auth`` still needs one (Harbor's rule)."""
    _require_system(principal, Action.UPDATE)
    row = await get_registration(session, registration_id)
    name = _text(body.name, "name", _MAX_NAME, required=True)
    url = check_url(body.url, egress)
    auth, credential = check_auth(body.auth, body.access_credential)
    await _check_name_free(session, name, row.id)
    if auth and not credential:
        if not row.access_credential or not row.auth:
            raise BadRequestError(f"access_credential is required for auth {auth}")
        sealed = row.access_credential
    else:
        sealed = await secretbox.seal(session, credential) if auth else ""
    disabled = bool(body.disabled)
    if disabled and row.is_default:
        raise BadRequestError("the default scanner cannot be disabled; make another the default")
    row.name = name
    row.description = _text(body.description, "description", _MAX_DESCRIPTION)
    row.url = url
    row.auth = auth
    row.access_credential = sealed
    row.disabled = disabled
    row.skip_cert_verify = bool(body.skip_certVerify)
    row.use_internal_addr = bool(body.use_internal_addr)


async def delete_registration(
    session: AsyncSession, principal: Principal, registration_id: str
) -> schemas.ScannerRegistration:
    """``deleteScanner``: the deleted registration; projects that chose it fall back to
    the default. Its reports stay until the artifacts go (they name the scanner's uuid)."""
    _require_system(principal, Action.DELETE)
    row = await get_registration(session, registration_id)
    view = registration_view(row)
    await session.delete(row)
    await session.flush()
    return view


async def set_default(
    session: AsyncSession, principal: Principal, registration_id: str, is_default: bool
) -> None:
    """``setScannerAsDefault``: ``true`` makes it the one default; ``false`` is accepted
    and changes nothing (there is always a default once one is registered)."""
    _require_system(principal, Action.UPDATE)
    row = await get_registration(session, registration_id)
    if not is_default:
        return
    if row.disabled:
        raise BadRequestError("a disabled scanner cannot be the default; enable it first")
    await session.execute(
        update(ScannerRegistration)
        .where(ScannerRegistration.id != row.id, ScannerRegistration.is_default.is_(True))
        .values(is_default=False)
    )
    row.is_default = True


def ping_endpoint(
    principal: Principal, body: schemas.ScannerRegistrationSettings, egress: EgressPolicy
) -> Endpoint:
    """``pingScanner``'s target, checked (the call itself is made by the handler's caller)."""
    _require_system(principal, Action.READ)
    _text(body.name, "name", _MAX_NAME, required=True)
    url = check_url(body.url, egress)
    auth, credential = check_auth(body.auth, body.access_credential)
    return Endpoint(url=url, auth=auth, credential=credential)


async def metadata_endpoint(
    session: AsyncSession, principal: Principal, registration_id: str
) -> Endpoint:
    _require_system(principal, Action.READ)
    row = await get_registration(session, registration_id)
    return await endpoint(session, row)


# --- the scanner of a project --------------------------------------------------------------


async def default_registration(session: AsyncSession) -> ScannerRegistration | None:
    found: ScannerRegistration | None = await session.scalar(
        select(ScannerRegistration).where(ScannerRegistration.is_default.is_(True)).limit(1)
    )
    return found


async def registration_of_project(
    session: AsyncSession, project_id: int
) -> ScannerRegistration | None:
    """The project's chosen scanner, else the default (None: no scanner at all), in one
    query (every listing with scan overviews asks)."""
    chosen = ProjectScanner.project_id.is_not(None)
    found: ScannerRegistration | None = await session.scalar(
        select(ScannerRegistration)
        .outerjoin(
            ProjectScanner,
            and_(
                ProjectScanner.registration_id == ScannerRegistration.id,
                ProjectScanner.project_id == project_id,
            ),
        )
        .where(or_(chosen, ScannerRegistration.is_default.is_(True)))
        .order_by(ProjectScanner.project_id.is_(None))  # the project's own first
        .limit(1)
    )
    return found


async def usable_registration(session: AsyncSession, project_id: int) -> ScannerRegistration:
    row = await registration_of_project(session, project_id)
    if row is None:
        raise NoScannerError("no scanner is registered; a system admin adds one under /scanners")
    if row.disabled:
        raise NoScannerError(f"the project's scanner {row.name!r} is disabled")
    return row


async def _project(
    session: AsyncSession, principal: Principal, name_or_id: str, by_name: bool, action: Action
) -> Project:
    project, context = await resolve_project(session, principal, name_or_id, by_name)
    require(principal, action, Resource.SCANNER, context)
    return project


async def project_scanner(
    session: AsyncSession, principal: Principal, name_or_id: str, by_name: bool
) -> schemas.ScannerRegistration:
    """``getScannerOfProject``: the chosen scanner or the default; 404 when there is none."""
    project = await _project(session, principal, name_or_id, by_name, Action.READ)
    row = await registration_of_project(session, project.project_id)
    if row is None:
        raise ScannerNotFoundError("no scanner is registered")
    return registration_view(row)


async def set_project_scanner(
    session: AsyncSession,
    principal: Principal,
    name_or_id: str,
    by_name: bool,
    body: schemas.ProjectScanner,
) -> None:
    """``setScannerOfProject`` (project admins): an enabled registration by uuid."""
    project = await _project(session, principal, name_or_id, by_name, Action.CREATE)
    wanted = (body.uuid or "").strip()
    if not wanted:
        raise BadRequestError("uuid is required")
    row = await find_by_uuid(session, wanted)
    if row is None:
        raise BadRequestError(f"no scanner registration {wanted[:64]!r}")
    if row.disabled:
        raise BadRequestError(f"scanner {row.name!r} is disabled")
    current = await session.get(ProjectScanner, project.project_id)
    if current is None:
        session.add(ProjectScanner(project_id=project.project_id, registration_id=row.id))
    else:
        current.registration_id = row.id


async def scanner_candidates(
    session: AsyncSession,
    principal: Principal,
    name_or_id: str,
    by_name: bool,
    q: str | None,
    sort: str | None,
    page: PageRequest,
) -> tuple[list[schemas.ScannerRegistration], int]:
    """``listScannerCandidatesOfProject``: the enabled registrations a project admin may pick."""
    await _project(session, principal, name_or_id, by_name, Action.CREATE)
    base: Select[Any] = select(ScannerRegistration).where(ScannerRegistration.disabled.is_(False))
    stmt = apply_q(base, parse_q(q), _COLUMNS)
    order = parse_sort(sort, _COLUMNS)
    rows, total = await fetch_page(session, stmt, page, order, ScannerRegistration.id.expression)
    return [registration_view(row[0]) for row in rows], total

"""The console's request machinery: who asks, in which language, CSRF, flash messages, pages.

Every console endpoint is a ``page`` (GET, renders HTML) or an ``action`` (POST,
changes something, then redirects: Post/Redirect/Get). Both resolve the
console session (the ``sid`` cookie of ``iam/sessions.py``); an action must
carry the session's CSRF token (form field ``_csrf`` or the
``X-Harbor-CSRF-Token`` header HTMX sends) or it is refused with 403 before it
reads anything else. Services decide access with ``can``; a refusal of an action
is a 403 page, a refusal of a page its status (404 hides a private project).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from dockyard.audit.events import Actor
from dockyard.console import i18n, kinds, navigation, scan_state
from dockyard.db.listing import PageRequest, parse_page
from dockyard.errors import (
    AppError,
    BadRequestError,
    ConflictError,
    DeniedError,
    EndpointNotFoundError,
    NotFoundError,
    PayloadTooLargeError,
    PreconditionFailedError,
    ProjectNotFoundError,
    UnauthorizedError,
)
from dockyard.http.errors import HARBOR_STATUS, status_for
from dockyard.http.state import AppState, base_url, client_address, get_state
from dockyard.iam import sessions
from dockyard.iam.policy import ANONYMOUS, Principal, can
from dockyard.system import readonly

PREFIX = "/harbor"
READ_ONLY_ALLOWED = frozenset({PREFIX + "/sign-out", PREFIX + "/admin/configuration"})
"""The console actions read-only mode lets through (the mode is switched off on the latter)."""
LANG_COOKIE = "dy_lang"
THEME_COOKIE = "dy_theme"
FLASH_COOKIE = "dy_flash"
SIGN_IN_COOKIE = "dy_signin"
"""Double-submit token of the sign-in form (there is no session to hold one yet)."""
CSRF_FIELD = "_csrf"
THEMES = ("auto", "light", "dark")
MAX_FORM_BYTES = 256 * 1024
PAGE_SIZE = 15
TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    # Scripts and styles only from the console itself; no framing; forms post only here.
    # Inline style attributes carry label colours and the quota bar's width.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
FLASH_ARG_LIMIT = 300

# Refusals that end an action with an error page; the rest go back with a message.
_REFUSALS = (DeniedError, UnauthorizedError, NotFoundError)


class Console:
    """What every console endpoint shares: templates and message catalogues (built once per app)."""

    def __init__(self) -> None:
        self.templates = Environment(
            loader=FileSystemLoader(TEMPLATE_DIR),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
            enable_async=False,
        )
        self.templates.filters["utc"] = _from_timestamp
        self.templates.filters["colour"] = _colour
        self.templates.globals["usage_percent"] = usage_percent
        self.templates.globals["artifact_kind"] = kinds.artifact_kind
        self.templates.globals["accessory_kind"] = kinds.accessory_kind
        self.templates.globals["scan_state"] = scan_state.scan_state
        self.templates.globals["sbom_state"] = scan_state.sbom_state
        self.templates.globals["severities"] = scan_state.SEVERITIES
        self.templates.globals["expiry_date"] = scan_state.expiry_date
        self.catalogues = i18n.load_catalogues()

    def translator(self, language: str) -> i18n.Translator:
        return i18n.Translator(
            language, self.catalogues[language], self.catalogues[i18n.DEFAULT_LANGUAGE]
        )


_COLOUR = re.compile(r"#[0-9a-fA-F]{3,8}")


def _colour(value: str | None, default: str = "#0065AB") -> str:
    """A label colour safe inside a style attribute: ``#rgb`` to ``#rrggbbaa`` only."""
    return value if value and _COLOUR.fullmatch(value) else default


def usage_percent(used: int, hard: int) -> int:
    """For a usage bar: 0-100, and at least 1 when anything is used (so it shows)."""
    if hard <= 0 or used <= 0:
        return 0
    return max(1, min(100, round(used * 100 / hard)))


def _from_timestamp(value: int | float | None) -> datetime | None:
    return None if value is None or value <= 0 else datetime.fromtimestamp(value, UTC)


def whole_number(raw: str, what: str, default: int | None = None) -> int | None:
    """A form's whole number (``default`` when blank), refused with ``what`` named when
    it is anything else or longer than 18 digits."""
    raw = raw.strip()
    if raw == "":
        return default
    digits = raw[1:] if raw.startswith("-") else raw
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        raise BadRequestError(f"{what} must be a whole number")
    return int(raw)


@dataclass
class Page:
    """One console request: the caller, their language, the form, and how to answer."""

    console: Console
    request: Request
    state: AppState
    principal: Principal = ANONYMOUS
    session: sessions.ConsoleSession | None = None
    form: dict[str, list[str]] = field(default_factory=dict)
    language: str = i18n.DEFAULT_LANGUAGE

    @property
    def t(self) -> i18n.Translator:
        return self.console.translator(self.language)

    # --- input ------------------------------------------------------------------------

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])

    def path_int(self, name: str) -> int:
        raw = self.path(name)
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            raise NotFoundError(f"{name} must be a positive integer")
        return int(raw)

    def query(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default)

    def page_request(self, size: int = PAGE_SIZE) -> PageRequest:
        try:
            return parse_page(self.query("page") or None, str(size))
        except BadRequestError:
            return PageRequest(1, size)

    def field(self, name: str, default: str = "") -> str:
        values = self.form.get(name)
        return values[-1] if values else default

    def fields(self, name: str) -> list[str]:
        return list(self.form.get(name, []))

    def checked(self, name: str) -> bool:
        return self.field(name) in ("on", "true", "1")

    def int_field(self, name: str, default: int | None = None) -> int | None:
        return whole_number(self.field(name), name, default)

    def id_field(self, name: str, what: str) -> int:
        """A required form field naming a row by its id (``what`` says whose, in the error)."""
        value = self.int_field(name)
        if value is None or not 0 < value < 2**63:
            raise BadRequestError(f"{name} must be {what}")
        return value

    def actor(self) -> Actor:
        return Actor(self.principal.name, client_address(self.request))

    def base_url(self) -> str:
        return base_url(self.request, self.state.settings)

    def registry_host(self) -> str:
        return urlsplit(self.base_url()).netloc

    # --- output -----------------------------------------------------------------------

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        flash = _read_flash(self.request)
        body = self.console.templates.get_template(template).render(
            t=self.t,
            page=self,
            user=self.principal,
            csrf=self.session.csrf_token if self.session else "",
            csrf_field=CSRF_FIELD,
            flash=flash,
            prefix=PREFIX,
            languages=i18n.LANGUAGES,
            language=self.language,
            theme=self.theme,
            here=self.here(),
            project_tabs=navigation.PROJECT_TABS,
            admin_sections=self.admin_sections,
            **context,
        )
        response = HTMLResponse(body, status_code=status, headers=dict(SECURITY_HEADERS))
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path="/")
        return response

    def admin_sections(self) -> list[navigation.Entry]:
        """The administration sections the caller may open (none for most users)."""
        if self.principal.is_anonymous or self.principal.is_robot:
            return []
        return [
            entry
            for entry in navigation.ADMIN_SECTIONS
            if can(self.principal, entry.action, entry.resource, None)
        ]

    @property
    def theme(self) -> str:
        chosen = self.request.cookies.get(THEME_COOKIE, "auto")
        return chosen if chosen in THEMES else "auto"

    def here(self) -> str:
        query = self.request.url.query
        return self.request.url.path + (f"?{query}" if query else "")

    def redirect(
        self, url: str, flash: str | None = None, kind: str = "ok", **args: str
    ) -> Response:
        response = RedirectResponse(url, status_code=303)
        if flash is not None:
            set_flash(response, kind, flash, args)
        return response

    def back(self) -> str:
        """Where the form was (same site only), for an action that must go back."""
        target = self.field("_back") or self.request.headers.get("referer", "")
        return safe_next(target, PREFIX + "/projects", self.request)


def set_flash(response: Response, kind: str, key: str, args: Mapping[str, str]) -> None:
    short = {name: text[:FLASH_ARG_LIMIT] for name, text in args.items()}
    value = json.dumps({"kind": kind, "key": key, "args": short}, separators=(",", ":"))
    response.set_cookie(FLASH_COOKIE, quote(value), path="/", httponly=True, samesite="lax")


def _read_flash(request: Request) -> dict[str, Any] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        value = json.loads(unquote(raw))
    except ValueError:
        return None
    if (
        not isinstance(value, dict)
        or value.get("kind") not in ("ok", "error")
        or not isinstance(value.get("key"), str)
        or not isinstance(value.get("args"), dict)
    ):
        return None
    value["args"] = {str(k): str(v) for k, v in value["args"].items()}
    return value


def safe_next(target: str, default: str, request: Request | None = None) -> str:
    """A console-local path to go to; anything pointing elsewhere becomes ``default``."""
    if not target:
        return default
    parts = urlsplit(target)
    if (parts.scheme or parts.netloc) and (
        request is None or parts.netloc != request.headers.get("host")
    ):
        return default
    path = parts.path
    if not path.startswith(PREFIX + "/") or path.startswith("//") or "\\" in path:
        return default
    return path + (f"?{parts.query}" if parts.query else "")


def with_query(path: str, **params: str | int | None) -> str:
    clean = {k: str(v) for k, v in params.items() if v not in (None, "")}
    return path + ("?" + urlencode(clean) if clean else "")


# --- endpoints --------------------------------------------------------------------------------

Handler = Callable[[Page], Awaitable[Response]]


async def _begin(console: Console, request: Request) -> Page:
    state = get_state(request)
    page = Page(console, request, state)
    page.language = i18n.pick_language(
        request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")
    )
    cookie = request.cookies.get(sessions.SESSION_COOKIE)
    if cookie:
        timeout = timedelta(minutes=state.settings.session_timeout_minutes)
        found = await sessions.resolve_session(state.db, cookie, timeout)
        if found is not None:
            page.session = found
            page.principal = found.principal
    return page


def _sign_in_redirect(request: Request) -> Response:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(with_query(PREFIX + "/sign-in", next=here), status_code=303)


def not_found_detail(page: Page, error: NotFoundError) -> tuple[str, dict[str, str]]:
    """What a 404 page says was not found, as a message key and its arguments: the services'
    messages are English, the page speaks the reader's language."""
    params = page.request.path_params
    if isinstance(error, ProjectNotFoundError) and "project" in params:
        return "error.detail.project", {"name": str(params["project"])}
    if isinstance(error, EndpointNotFoundError):
        return "error.detail.page", {"path": page.request.url.path}
    if page.request.method == "GET" and "reference" in params:
        # The artifact page: whatever the service calls it, the artifact is what is missing.
        return "error.detail.artifact", {"name": f"{params['repository']}:{params['reference']}"}
    if page.request.method == "GET" and "repository" in params:
        return "error.detail.repository", {"name": str(params["repository"])}
    return "error.detail.not_found", {"path": page.request.url.path}


def error_page(page: Page, error: AppError) -> Response:
    status = status_for(error, HARBOR_STATUS)
    if status >= 500:
        raise error
    message = error.message
    if isinstance(error, NotFoundError):
        key, args = not_found_detail(page, error)
        message = page.t(key, **args)
    return page.render("error.html", status=status, status_code=status, message=message)


def page_endpoint(
    console: Console, handler: Handler, *, public: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """A GET page; signed-out callers are sent to sign in (unless ``public``)."""

    async def endpoint(request: Request) -> Response:
        page = await _begin(console, request)
        if page.principal.is_anonymous and not public:
            return _sign_in_redirect(request)
        try:
            return await handler(page)
        except AppError as exc:
            return error_page(page, exc)

    return endpoint


def action_endpoint(
    console: Console, handler: Handler, *, public: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """A POST action: CSRF-checked before anything else, refused (403) when signed out."""

    async def endpoint(request: Request) -> Response:
        page = await _begin(console, request)
        try:
            page.form = await read_form(request)
        except AppError as exc:
            return error_page(page, exc)
        if not public:
            offered = page.field(CSRF_FIELD) or request.headers.get(sessions.CSRF_HEADER)
            if page.session is None:
                return error_page(page, DeniedError("sign in first"))
            if not page.session.accepts_csrf(offered):
                return error_page(page, DeniedError("the CSRF token is missing or invalid"))
            if request.url.path not in READ_ONLY_ALLOWED and await readonly.is_on(page.state.db):
                return page.redirect(page.back(), "flash.refused", "error", reason=readonly.MESSAGE)
        try:
            return await handler(page)
        except _REFUSALS as exc:
            return error_page(page, exc)
        except (BadRequestError, ConflictError, PreconditionFailedError, AppError) as exc:
            if status_for(exc, HARBOR_STATUS) >= 500:
                raise
            return page.redirect(page.back(), "flash.refused", "error", reason=exc.message)

    return endpoint


async def read_form(request: Request) -> dict[str, list[str]]:
    """A URL-encoded form, size-capped and strictly UTF-8."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_FORM_BYTES:
        raise PayloadTooLargeError("the form is too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise PayloadTooLargeError("the form is too large")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=500, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise BadRequestError("the form is not a valid URL-encoded UTF-8 form") from None
    form: dict[str, list[str]] = {}
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    return form


def new_sign_in_token() -> str:
    return secrets.token_urlsafe(24)


def secure_cookies(request: Request, state: AppState) -> bool:
    """Cookies are ``Secure`` when the console is reached over https."""
    return request.url.scheme == "https" or base_url(request, state.settings).startswith("https://")

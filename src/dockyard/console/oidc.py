"""Sign-in through the OIDC provider, at Harbor's paths: ``/c/oidc/login`` sends the
browser to the provider, ``/c/oidc/callback`` takes it back, and a new user without
``oidc_auto_onboard`` picks a username at ``/harbor/oidc-onboard``. The flow itself is
``iam/oidc.py``; here are its cookies and pages.

Cookies: ``dy_oidc_state`` (the state of the sign-in this browser started; path
``/c/oidc``, HttpOnly, SameSite=Lax so that the provider's redirect back carries it) and
``dy_oidc_onboard`` (the onboarding ticket, path ``/harbor/oidc-onboard``). A failure
shows the sign-in page with the reason, never a 500, and makes no account.
"""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from dockyard.audit import service as audit
from dockyard.audit.events import Actor
from dockyard.console.account import session_response, sign_in_form, start_console_session
from dockyard.console.web import PREFIX, Page, safe_next, secure_cookies
from dockyard.errors import AppError, DeniedError, ServiceUnavailableError, UnauthorizedError
from dockyard.http.errors import HARBOR_STATUS, status_for
from dockyard.http.state import base_url, client_address
from dockyard.iam import oidc

STATE_COOKIE = "dy_oidc_state"
ONBOARD_COOKIE = "dy_oidc_onboard"
CALLBACK_PATH = "/c/oidc/callback"
LOGIN_PATH = "/c/oidc/login"
ONBOARD_PATH = PREFIX + "/oidc-onboard"
_MAX_PARAMETER = 4096


def _redirect_uri(page: Page) -> str:
    """The callback URL registered at the provider (from ``external_url`` when set)."""
    return base_url(page.request, page.state.settings) + CALLBACK_PATH


async def _failed(page: Page, exc: AppError) -> Response:
    """The sign-in page saying why (503 when the provider cannot be asked)."""
    status = status_for(exc, HARBOR_STATUS)
    if isinstance(exc, ServiceUnavailableError):
        status = 503
    message = page.t("oidc.failed", reason=exc.message)
    response = await sign_in_form(page, message, status=status)
    response.delete_cookie(STATE_COOKIE, path="/c/oidc")
    return response


async def login(page: Page) -> Response:
    """``GET /c/oidc/login?redirect_url=``: to the provider's sign-in page."""
    after = safe_next(page.query("redirect_url"), PREFIX + "/dashboard")
    try:
        started = await oidc.begin(
            page.state.db, page.state.identity.oidc, _redirect_uri(page), after
        )
    except AppError as exc:
        return await _failed(page, exc)
    response = RedirectResponse(started.url, status_code=303)
    response.set_cookie(
        STATE_COOKIE,
        started.state,
        max_age=oidc.FLOW_SECONDS,
        path="/c/oidc",
        httponly=True,
        samesite="lax",
        secure=secure_cookies(page.request, page.state),
    )
    return response


async def callback(page: Page) -> Response:
    """``GET /c/oidc/callback?code=&state=`` (or ``error=``): sign in, or onboard."""
    where = client_address(page.request)
    try:
        outcome = await oidc.finish(
            page.state.db,
            page.state.identity.oidc,
            state=page.query("state")[:_MAX_PARAMETER],
            browser_state=page.request.cookies.get(STATE_COOKIE, ""),
            code=page.query("code")[:_MAX_PARAMETER],
            error=(page.query("error_description") or page.query("error"))[:_MAX_PARAMETER],
            robot_prefix=page.state.settings.robot_name_prefix,
        )
    except AppError as exc:
        if isinstance(exc, UnauthorizedError):
            await audit.record_failure(
                page.state.db,
                Actor("oidc", where),
                audit.login_event("oidc", "the console"),
                reason=exc.message,
            )
        return await _failed(page, exc)
    response: Response
    if isinstance(outcome, oidc.NeedsUsername):
        response = RedirectResponse(ONBOARD_PATH, status_code=303)
        response.set_cookie(
            ONBOARD_COOKIE,
            outcome.ticket,
            max_age=oidc.FLOW_SECONDS,
            path=ONBOARD_PATH,
            httponly=True,
            samesite="lax",
            secure=secure_cookies(page.request, page.state),
        )
    else:
        started = await start_console_session(page, outcome.user_id, outcome.username)
        response = session_response(page, started, outcome.after)
    response.delete_cookie(STATE_COOKIE, path="/c/oidc")
    return response


async def onboard_form(page: Page, error: str | None = None, status: int = 200) -> Response:
    """``GET /harbor/oidc-onboard``: the username a new OIDC user will have."""
    ticket = page.request.cookies.get(ONBOARD_COOKIE, "")
    suggestion = await oidc.onboarding_suggestion(page.state.db, ticket) if ticket else None
    if suggestion is None:
        return await sign_in_form(page, page.t("oidc.onboard_expired"), status=401)
    return page.render(
        "oidc_onboard.html",
        status=status,
        username=page.field("username") or suggestion,
        error=error,
    )


async def onboard(page: Page) -> Response:
    """``POST /harbor/oidc-onboard``: make the user with the chosen name and sign in."""
    ticket = page.request.cookies.get(ONBOARD_COOKIE, "")
    if not ticket:  # no sign-in at the provider led here: nothing to onboard
        return await _failed(page, DeniedError(page.t("oidc.onboard_expired")))
    try:
        done = await oidc.onboard(
            page.state.db,
            ticket,
            page.field("username"),
            page.state.settings.robot_name_prefix,
        )
    except UnauthorizedError as exc:
        return await _failed(page, exc)
    except AppError as exc:  # a name taken or not allowed: choose again
        if status_for(exc, HARBOR_STATUS) >= 500:
            return await _failed(page, exc)
        return await onboard_form(page, exc.message, status=status_for(exc, HARBOR_STATUS))
    started = await start_console_session(page, done.user_id, done.username)
    response = session_response(page, started, done.after)
    response.delete_cookie(ONBOARD_COOKIE, path=ONBOARD_PATH)
    return response

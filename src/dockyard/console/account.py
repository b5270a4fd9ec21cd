"""Console pages of one's own account: sign in and out, preferences, profile, password."""

from __future__ import annotations

from datetime import timedelta

from starlette.responses import RedirectResponse, Response

from dockyard.audit import service as audit
from dockyard.audit.events import Actor
from dockyard.console import i18n
from dockyard.console.web import (
    CSRF_FIELD,
    LANG_COOKIE,
    PREFIX,
    SIGN_IN_COOKIE,
    THEME_COOKIE,
    THEMES,
    Page,
    new_sign_in_token,
    safe_next,
    secure_cookies,
)
from dockyard.errors import AppError, TooManyRequestsError, UnauthorizedError
from dockyard.http.state import client_address
from dockyard.iam import sessions, users

_YEAR = 365 * 24 * 3600


async def sign_in_form(page: Page, error: str | None = None, status: int = 200) -> Response:
    if not page.principal.is_anonymous and error is None:
        return RedirectResponse(PREFIX + "/dashboard", status_code=303)
    token = page.request.cookies.get(SIGN_IN_COOKIE) or new_sign_in_token()
    response = page.render(
        "sign_in.html",
        status=status,
        sign_in_token=token,
        next=safe_next(page.query("next") or page.field("next"), PREFIX + "/dashboard"),
        error=error,
        username=page.field("principal"),
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        path=PREFIX + "/sign-in",
        httponly=True,
        samesite="strict",
        secure=secure_cookies(page.request, page.state),
    )
    return response


async def sign_in(page: Page) -> Response:
    """Check the double-submitted form token, the credentials, then start a session."""
    state = page.state
    expected = page.request.cookies.get(SIGN_IN_COOKIE)
    if not expected or page.field(CSRF_FIELD) != expected:
        return await sign_in_form(page, page.t("signin.expired"), status=403)
    name, password = page.field("principal").strip(), page.field("password")
    where = client_address(page.request)
    try:
        if await state.identity.is_robot_name(name):
            raise UnauthorizedError("robot accounts cannot sign in to the console")
        if not name or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise UnauthorizedError("invalid username or password")
        principal = await state.identity.authenticate(name, password, where)
        if principal.kind != "user" or principal.user_id is None:
            raise UnauthorizedError("only users can sign in to the console")
        timeout = timedelta(minutes=state.settings.session_timeout_minutes)
        async with state.db.write() as session:
            old = page.request.cookies.get(sessions.SESSION_COOKIE)
            if old:
                await sessions.end_session(session, old)
            started = await sessions.start_session(session, principal.user_id, timeout)
            await audit.record(
                session,
                Actor(principal.name, where),
                audit.login_event(principal.name, "the console"),
            )
    except (UnauthorizedError, TooManyRequestsError) as exc:
        if 0 < len(name) <= users.MAX_NAME_LENGTH and name.isprintable():
            await audit.record_failure(
                state.db,
                Actor(name, where),
                audit.login_event(name, "the console"),
                reason=exc.message,
            )
        if isinstance(exc, TooManyRequestsError):
            throttled = await sign_in_form(page, page.t("signin.throttled"), status=429)
            throttled.headers["Retry-After"] = str(exc.retry_after)
            return throttled
        return await sign_in_form(page, page.t("signin.invalid"), status=401)
    target = safe_next(page.field("next"), PREFIX + "/dashboard")
    response = RedirectResponse(target, status_code=303)
    secure = secure_cookies(page.request, state)
    response.set_cookie(
        sessions.SESSION_COOKIE,
        started.cookie,
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure,
    )
    response.set_cookie(
        sessions.CSRF_COOKIE, started.csrf_token, path="/", samesite="lax", secure=secure
    )
    response.delete_cookie(SIGN_IN_COOKIE, path=PREFIX + "/sign-in")
    return response


async def sign_out(page: Page) -> Response:
    cookie = page.request.cookies.get(sessions.SESSION_COOKIE)
    if cookie:
        async with page.state.db.write() as session:
            await sessions.end_session(session, cookie)
    response = RedirectResponse(PREFIX + "/sign-in", status_code=303)
    secure = secure_cookies(page.request, page.state)
    response.delete_cookie(
        sessions.SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=secure
    )
    response.delete_cookie(sessions.CSRF_COOKIE, path="/", samesite="lax", secure=secure)
    return response


async def preferences(page: Page) -> Response:
    """``?lang=`` and/or ``?theme=``: remembered in cookies (no server state changes)."""
    response = RedirectResponse(
        safe_next(page.query("next"), PREFIX + "/projects", page.request), status_code=303
    )
    lang, theme = page.query("lang"), page.query("theme")
    if lang in i18n.LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=_YEAR, path="/", samesite="lax")
    if theme in THEMES:
        response.set_cookie(THEME_COOKIE, theme, max_age=_YEAR, path="/", samesite="lax")
    return response


async def profile(page: Page) -> Response:
    assert page.principal.user_id is not None
    async with page.state.db.read() as session:
        user = await users.get_user(session, page.principal.user_id)
    return page.render("account/profile.html", account=user)


async def update_profile(page: Page) -> Response:
    assert page.principal.user_id is not None
    async with page.state.db.write() as session:
        await users.update_profile(
            session,
            page.principal.user_id,
            email=page.field("email"),
            realname=page.field("realname"),
            comment=page.field("comment"),
            operator=page.actor(),
        )
    return page.redirect(PREFIX + "/account/profile", "flash.profile_saved")


async def change_password(page: Page) -> Response:
    """The old password is checked by the login path, so guesses are throttled like logins."""
    assert page.principal.user_id is not None
    if page.field("new_password") != page.field("confirm_password"):
        return page.redirect(PREFIX + "/account/profile", "flash.password_mismatch", "error")
    try:
        await page.state.identity.authenticate(
            page.principal.name, page.field("old_password"), client_address(page.request)
        )
    except AppError:
        return page.redirect(PREFIX + "/account/profile", "flash.password_wrong", "error")
    async with page.state.db.write() as session:
        await users.set_password(
            session,
            page.principal.user_id,
            page.field("new_password"),
            keep_session=page.session.session_id if page.session else None,
            operator=page.actor(),
        )
    return page.redirect(PREFIX + "/account/profile", "flash.password_changed")

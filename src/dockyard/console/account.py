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
    with_query,
)
from dockyard.errors import AppError, TooManyRequestsError, UnauthorizedError
from dockyard.http.state import base_url, client_address
from dockyard.iam import oidc, sessions, users
from dockyard.iam.providers.oidc import load_config_if_enabled
from dockyard.system import config

_YEAR = 365 * 24 * 3600


async def sign_in_form(page: Page, error: str | None = None, status: int = 200) -> Response:
    if not page.principal.is_anonymous and error is None:
        return RedirectResponse(PREFIX + "/dashboard", status_code=303)
    token = page.request.cookies.get(SIGN_IN_COOKIE) or new_sign_in_token()
    after = safe_next(page.query("next") or page.field("next"), PREFIX + "/dashboard")
    async with page.state.db.read() as session:
        oidc_cfg = await load_config_if_enabled(session)
        primary = oidc_cfg is not None and bool(
            await config.value(session, config.PRIMARY_AUTH_MODE)
        )
    oidc_login = with_query("/c/oidc/login", redirect_url=after)
    # primary_auth_mode: the page is the provider's, except with ?local=1, where `admin`
    # (always a database user) signs in with its password. A failed attempt comes back
    # with an error and stays on the form.
    if primary and error is None and page.query("local") != "1":
        return RedirectResponse(oidc_login, status_code=303)
    response = page.render(
        "sign_in.html",
        status=status,
        sign_in_token=token,
        next=after,
        error=error,
        username=page.field("principal"),
        oidc_name=None if oidc_cfg is None else (oidc_cfg.name or "OIDC"),
        oidc_login=oidc_login,
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
        started = await start_console_session(page, principal.user_id, principal.name)
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
    response = session_response(page, started, safe_next(page.field("next"), PREFIX + "/dashboard"))
    response.delete_cookie(SIGN_IN_COOKIE, path=PREFIX + "/sign-in")
    return response


async def start_console_session(page: Page, user_id: int, name: str) -> sessions.NewSession:
    """A new console session for a user who proved who they are (ending the browser's
    old one), with the audit log's login event."""
    timeout = timedelta(minutes=page.state.settings.session_timeout_minutes)
    async with page.state.db.write() as session:
        old = page.request.cookies.get(sessions.SESSION_COOKIE)
        if old:
            await sessions.end_session(session, old)
        started = await sessions.start_session(session, user_id, timeout)
        await audit.record(
            session,
            Actor(name, client_address(page.request)),
            audit.login_event(name, "the console"),
        )
    return started


def session_response(page: Page, started: sessions.NewSession, target: str) -> Response:
    """A redirect to ``target`` that sets the new session's cookies (``sid``, ``__csrf``)."""
    response = RedirectResponse(target, status_code=303)
    secure = secure_cookies(page.request, page.state)
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
    return response


async def sign_out(page: Page) -> Response:
    """End the session; under ``oidc_logout`` go on to sign out at the provider too."""
    cookie = page.request.cookies.get(sessions.SESSION_COOKIE)
    at_provider = await _provider_logout(page)
    if cookie:
        async with page.state.db.write() as session:
            await sessions.end_session(session, cookie)
    response: Response
    if at_provider is None:
        response = RedirectResponse(PREFIX + "/sign-in", status_code=303)
    else:
        # A page that moves on by itself: the console's CSP (form-action 'self') would
        # stop the form's navigation from being redirected to the provider.
        response = page.render("oidc_signed_out.html", provider_logout=at_provider)
    secure = secure_cookies(page.request, page.state)
    response.delete_cookie(
        sessions.SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=secure
    )
    response.delete_cookie(sessions.CSRF_COOKIE, path="/", samesite="lax", secure=secure)
    return response


async def _provider_logout(page: Page) -> str | None:
    """The provider's logout URL for this OIDC user under ``oidc_logout`` (None: none, or
    the provider cannot be asked now — the session still ends here)."""
    user_id = page.principal.user_id
    if user_id is None:
        return None
    async with page.state.db.read() as session:
        cfg = await load_config_if_enabled(session)
        if cfg is None or not cfg.logout:
            return None
        hint = await oidc.id_token_hint(session, user_id)
    if not hint:
        return None  # admin, or another user who never signed in at the provider
    try:
        metadata = await page.state.identity.oidc.metadata(cfg)
    except AppError:
        return None
    after = base_url(page.request, page.state.settings) + PREFIX + "/sign-in"
    return page.state.identity.oidc.logout_url(metadata, cfg, hint, after)


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
        cli_secret = await oidc.cli_secret(session, page.principal.user_id)
    return page.render("account/profile.html", account=user, cli_secret=cli_secret)


async def regenerate_cli_secret(page: Page) -> Response:
    """A new random CLI secret for an OIDC user (the old one stops working at once)."""
    assert page.principal.user_id is not None
    async with page.state.db.write() as session:
        await oidc.set_cli_secret(session, page.principal.user_id, None)
    return page.redirect(PREFIX + "/account/profile", "flash.cli_secret_regenerated")


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

"""Failed-login throttling that nobody can turn against an account's owner.

Failures count per account *and* address, in the database (every worker and node
sees them); an address is refused only when it sprays many accounts. The client
address comes from ``Forwarded``/``X-Forwarded-For`` only behind ``trusted_proxies``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from tests.console.helpers import form_token
from tests.integration.conftest import make_client

from dockyard.app import create_app
from dockyard.audit import hooks as audit_hooks
from dockyard.audit.models import AuditLog
from dockyard.http.state import AppState
from dockyard.iam.models import LoginFailure, User
from dockyard.iam.passwords import hash_password
from dockyard.iam.ratelimit import LoginThrottle
from dockyard.settings import Settings

PASSWORD = "Passw0rdPassw0rd"
LIMIT = 3
ADDRESS_LIMIT = 8
PROXY = "127.0.0.1"  # the test clients' peer address, trusted as a proxy here


async def _strict_app(settings: Settings) -> AsyncIterator[Starlette]:
    strict = settings.model_copy(
        update={
            "login_failure_limit": LIMIT,
            "login_address_failure_limit": ADDRESS_LIMIT,
            "trusted_proxies": [PROXY],
            "audit_token_service_logins": True,  # the proxy test reads their addresses
        }
    )
    application = create_app(strict)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def strict(settings: Settings, app: Starlette) -> AsyncIterator[Starlette]:
    """An app on the session's database with small limits, behind a trusted proxy."""
    async for application in _strict_app(settings):
        yield application


@pytest.fixture(scope="module")
async def other_node(settings: Settings, app: Starlette) -> AsyncIterator[Starlette]:
    """A second app (another worker or node) on the same database."""
    async for application in _strict_app(settings):
        yield application


async def _user(state: AppState) -> str:
    name = f"t{uuid.uuid4().hex[:10]}"
    async with state.db.write() as session:
        session.add(User(username=name, password=hash_password(PASSWORD)))
    return name


def _address() -> str:
    """A fresh client address (in 127.0.0.0/8), so tests never share counters."""
    return "127.{}.{}.{}".format(*uuid.uuid4().bytes[:3])


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


Login = Callable[[httpx.AsyncClient, str, str, str], Awaitable[httpx.Response]]


async def _token(
    client: httpx.AsyncClient, name: str, password: str, address: str
) -> httpx.Response:
    return await client.get(
        "/service/token",
        params={"service": "dockyard", "scope": "repository:library/x:pull"},
        auth=(name, password),
        headers=_from(address),
    )


async def _v2(client: httpx.AsyncClient, name: str, password: str, address: str) -> httpx.Response:
    return await client.get("/v2/", auth=(name, password), headers=_from(address))


async def _api(client: httpx.AsyncClient, name: str, password: str, address: str) -> httpx.Response:
    return await client.get(
        "/api/v2.0/users/current", auth=(name, password), headers=_from(address)
    )


async def _c_login(
    client: httpx.AsyncClient, name: str, password: str, address: str
) -> httpx.Response:
    return await client.post(
        "/c/login", data={"principal": name, "password": password}, headers=_from(address)
    )


async def _console(
    client: httpx.AsyncClient, name: str, password: str, address: str
) -> httpx.Response:
    page = await client.get("/harbor/sign-in")
    return await client.post(
        "/harbor/sign-in",
        data={"_csrf": form_token(page.text), "principal": name, "password": password},
        headers=_from(address),
    )


PATHS: dict[str, Login] = {
    "token service": _token,
    "v2 basic": _v2,
    "api basic": _api,
    "c/login": _c_login,
    "console sign-in": _console,
}
OK = {
    "token service": 200,
    "v2 basic": 200,
    "api basic": 200,
    "c/login": 200,
    "console sign-in": 303,
}


async def _failures(state: AppState, name: str) -> int:
    async with state.db.read() as session:
        count = await session.scalar(
            select(func.count()).select_from(LoginFailure).where(LoginFailure.account == name)
        )
    return int(count or 0)


@pytest.mark.parametrize("path", list(PATHS))
async def test_an_attacker_cannot_lock_the_owner_out(
    strict: Starlette, state: AppState, path: str
) -> None:
    login = PATHS[path]
    name, attacker, owner = await _user(state), _address(), _address()
    async with make_client(strict) as client:
        for _ in range(LIMIT):
            assert (await login(client, name, "wrong", attacker)).status_code == 401
        # the attacker's address is refused for this account, with a Retry-After
        refused = await login(client, name, PASSWORD, attacker)
        assert refused.status_code == 429, refused.text
        assert 0 < int(refused.headers["retry-after"]) <= 300
        # a refused attempt is not counted: the attacker cannot stretch the wait
        for _ in range(3):
            assert (await login(client, name, "wrong", attacker)).status_code == 429
        assert await _failures(state, name) == LIMIT
        # the owner, from an address with no failures, gets in at once
        assert (await login(client, name, PASSWORD, owner)).status_code == OK[path]


async def test_typos_of_one_user_do_not_lock_others_behind_the_same_address(
    strict: Starlette, state: AppState
) -> None:
    nat, clumsy, colleague = _address(), await _user(state), await _user(state)
    async with make_client(strict) as client:
        for _ in range(LIMIT + 2):
            await _token(client, clumsy, "typo", nat)
        assert (await _token(client, clumsy, PASSWORD, nat)).status_code == 429
        assert (await _token(client, colleague, PASSWORD, nat)).status_code == 200


async def test_a_correct_password_clears_its_failures(strict: Starlette, state: AppState) -> None:
    name, where = await _user(state), _address()
    async with make_client(strict) as client:
        for _ in range(LIMIT - 1):
            assert (await _v2(client, name, "wrong", where)).status_code == 401
        assert (await _v2(client, name, PASSWORD, where)).status_code == 200
        assert await _failures(state, name) == 0
        for _ in range(LIMIT - 1):
            assert (await _v2(client, name, "wrong", where)).status_code == 401
        assert (await _v2(client, name, PASSWORD, where)).status_code == 200


async def test_spraying_many_accounts_refuses_the_address(
    strict: Starlette, state: AppState
) -> None:
    sprayer, victim = _address(), await _user(state)
    async with make_client(strict) as client:
        for _ in range(ADDRESS_LIMIT):
            guessed = await _token(client, f"n{uuid.uuid4().hex[:8]}", "Summer2026!", sprayer)
            assert guessed.status_code == 401
        refused = await _token(client, victim, PASSWORD, sprayer)
        assert refused.status_code == 429
        assert "retry-after" in refused.headers
        assert (await _token(client, victim, PASSWORD, _address())).status_code == 200


async def test_every_node_counts_the_same_failures(
    strict: Starlette, other_node: Starlette, state: AppState
) -> None:
    name, attacker = await _user(state), _address()
    async with make_client(strict) as one, make_client(other_node) as two:
        for client in (one, two, one):
            assert (await _token(client, name, "wrong", attacker)).status_code == 401
        assert (await _token(two, name, PASSWORD, attacker)).status_code == 429
        assert (await _v2(one, name, PASSWORD, attacker)).status_code == 429


async def test_v2_basic_while_throttled_is_429_not_500(strict: Starlette, state: AppState) -> None:
    name, where = await _user(state), _address()
    async with make_client(strict) as client:
        for _ in range(LIMIT):
            await _v2(client, name, "wrong", where)
        for path in ("/v2/", "/v2/_catalog"):
            response = await client.get(path, auth=(name, PASSWORD), headers=_from(where))
            assert response.status_code == 429, path
            assert response.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
            assert int(response.headers["retry-after"]) > 0


async def _login_ips(state: AppState, name: str) -> list[str]:
    async with state.db.read() as session:
        rows = await session.scalars(
            select(AuditLog.client_ip).where(AuditLog.resource == name).order_by(AuditLog.id)
        )
    return list(rows)


async def test_forwarded_addresses_only_from_trusted_proxies(
    app: Starlette, strict: Starlette, state: AppState
) -> None:
    name, client_ip = await _user(state), _address()
    async with make_client(app) as untrusted, make_client(strict) as trusted:
        # the session app trusts no proxy: the header is the client's word, ignored (a
        # failed login, since only failures are audited there; queued, so flushed below)
        assert (await _token(untrusted, name, "wrong", client_ip)).status_code == 401
        assert (await _token(trusted, name, PASSWORD, client_ip)).status_code == 200
        forwarded = await trusted.get(
            "/service/token",
            params={"service": "dockyard"},
            auth=(name, PASSWORD),
            headers={"Forwarded": f'for="{client_ip}:4711";proto=https'},
        )
        assert forwarded.status_code == 200
    hooks = getattr(state.registry.hooks, "hooks", ())
    await next(h for h in hooks if isinstance(h, audit_hooks.RegistryHooks)).flush()
    assert sorted(await _login_ips(state, name)) == sorted([PROXY, client_ip, client_ip])


async def test_failures_leave_the_window(state: AppState) -> None:
    """The wait ends when the failures age out; ``Retry-After`` never exceeds the window."""
    throttle = LoginThrottle(limit=2, address_limit=100, window=0.5)
    name, where = f"w{uuid.uuid4().hex[:10]}", _address()
    for _ in range(2):
        async with state.db.write() as session:
            await throttle.failed(session, name, where)
    async with state.db.read() as session:
        held = await throttle.check(session, name, where)
        elsewhere = await throttle.check(session, name, _address())
    assert held.pair_failures == 2 and held.retry_after == 1
    assert elsewhere.retry_after == 0
    for _ in range(50):  # bounded: 50 x 20 ms against a 0.5 s window
        async with state.db.read() as session:
            if not (await throttle.check(session, name, where)).retry_after:
                break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the failures never left the window")

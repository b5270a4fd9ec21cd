"""An httpx ``Auth`` that answers registry challenges the way docker and skopeo do.

On a ``401`` with ``WWW-Authenticate: Bearer realm=…,service=…,scope=…`` it asks the realm for a
token (with HTTP Basic credentials when it has them, anonymously otherwise) and retries with
``Authorization: Bearer …``; on a ``Basic`` challenge it retries with Basic credentials.
Tokens are cached per scope, and the last answer is sent up front on the next request, so a
client that walks one repository fetches one token and mostly skips the 401 round trip.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Generator

import httpx

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``'Bearer realm="x",scope="a b"'`` → ``("bearer", {"realm": "x", "scope": "a b"})``."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        match.group(1).lower(): match.group(2) if match.group(2) is not None else match.group(3)
        for match in _PARAM.finditer(rest)
    }
    return scheme.lower(), params


class RegistryAuth(httpx.Auth):
    """Docker token-protocol auth for httpx; ``credentials=None`` means anonymous."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self._tokens: dict[tuple[str, str, str], str] = {}
        self._preemptive: str | None = None  # what answered the last challenge
        self.token_requests = 0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "Authorization" in request.headers:  # the caller chose its own credentials
            yield request
            return
        sent = self._preemptive
        if sent is not None:
            request.headers["Authorization"] = sent
        response = yield request
        if response.status_code != 401:
            return
        scheme, params = parse_challenge(response.headers.get("www-authenticate", ""))
        if scheme == "basic":
            if self.credentials is None:
                return
            self._preemptive = basic_header(*self.credentials)
        elif scheme == "bearer" and "realm" in params:
            key = (params["realm"], params.get("service", ""), params.get("scope", ""))
            token = self._tokens.get(key)
            if token is None or f"Bearer {token}" == sent:
                token_response = yield self._token_request(params)
                token_response.read()
                if token_response.status_code != 200:
                    return
                body = token_response.json()
                token = body.get("token") or body.get("access_token")
                if not token:
                    return
                self._tokens[key] = token
            self._preemptive = f"Bearer {token}"
        else:
            return
        if self._preemptive == sent:
            return  # the same answer was just refused
        request.headers["Authorization"] = self._preemptive
        yield request

    def _token_request(self, params: dict[str, str]) -> httpx.Request:
        self.token_requests += 1
        query: dict[str, str] = {k: params[k] for k in ("service", "scope") if k in params}
        headers = {}
        if self.credentials is not None:
            headers["Authorization"] = basic_header(*self.credentials)
        return httpx.Request("GET", params["realm"], params=query, headers=headers)


def fetch_token(
    base_url: str,
    scopes: list[str],
    *,
    credentials: tuple[str, str] | None = None,
    service: str = "dockyard",
) -> httpx.Response:
    """``GET /service/token`` for ``scopes`` (a token response, whatever its status)."""
    params: list[tuple[str, str]] = [("service", service)]
    params += [("scope", scope) for scope in scopes]
    return httpx.get(
        f"{base_url}/service/token", params=tuple(params), auth=credentials, timeout=30
    )

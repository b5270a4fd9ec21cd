"""Console helpers shared by the browser tests and the ASGI integration tests."""

from __future__ import annotations

import re

import httpx

_CSRF = re.compile(r'name="_csrf" value="([^"]*)"')


def form_token(html: str) -> str:
    """The first CSRF token a page's forms carry."""
    found = _CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, username: str, password: str) -> str:
    """Sign ``client`` in through the console's form; returns the session's CSRF token."""
    page = await client.get("/harbor/sign-in")
    assert page.status_code == 200, page.text
    response = await client.post(
        "/harbor/sign-in",
        data={"_csrf": form_token(page.text), "principal": username, "password": password},
    )
    assert response.status_code == 303, response.text
    projects = await client.get("/harbor/projects")
    assert projects.status_code == 200, projects.text
    return form_token(projects.text)

from __future__ import annotations

import base64

import pytest

from dockyard.errors import UnauthorizedError
from dockyard.http.auth import BasicCredentials, BearerToken, parse_authorization


def _basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        (_basic(":"), None),
        (_basic("admin:pw"), BasicCredentials("admin", "pw")),
        (_basic("admin:pw:with:colons"), BasicCredentials("admin", "pw:with:colons")),
        (_basic("admin:"), BasicCredentials("admin", "")),
        ("bearer abc.def.ghi", BearerToken("abc.def.ghi")),
        ("Bearer   abc  ", BearerToken("abc")),
    ],
)
def test_parses(header: str | None, expected: object) -> None:
    assert parse_authorization(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!notbase64",
        _basic("no-colon"),
        _basic(":password-without-user"),
        _basic("nul\x00:x"),
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
        "Digest username=x",
        "Bearer",
        "Basic",
        "Basic ü",
    ],
)
def test_refuses(header: str) -> None:
    with pytest.raises(UnauthorizedError):
        parse_authorization(header)

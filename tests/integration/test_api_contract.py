"""Dockyard's ``/api/v2.0`` against Harbor's swagger, mechanically.

Nothing here is written per endpoint: every ``Operation`` the app serves is
compared with the swagger operation of its operationId (method, path template,
parameters, success status, response fields), the router must resolve each
template as swagger does, and every GET that can be called generically is
called as admin and must answer 200 with a body that validates. Other
exchanges are checked by the client hook in ``conftest.py`` wherever a test
makes them; at the end of the session a note names the implemented operations
no test exercised.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydantic import TypeAdapter
from starlette.routing import Match
from tests.support import harbor_contract
from tests.support.harbor_contract import HarborContract

from dockyard.app import api_operations
from dockyard.http.api import API_PREFIX, ApiRoute, Operation, api_routes

OPERATIONS = api_operations()
NAMED = [op for op in OPERATIONS if op.operation_id is not None]
PARAM = re.compile(r"\{([^}/]+)\}")

FIXED_PATH_VALUES = {"project_name_or_id": "library", "project_name": "library"}
"""Path parameters every install can fill: bootstrap creates the ``library`` project."""
REQUIRED_QUERY_SAMPLES = {"username": "admin", "groupname": "group", "q": "library"}


def _op_id(op: Operation) -> str:
    return op.operation_id or f"{op.method} {op.path}"


@pytest.fixture(scope="module")
def contract() -> HarborContract:
    found = harbor_contract.load_contract()
    if found is None:
        pytest.skip(harbor_contract.skip_reason())
    return found


@pytest.fixture(scope="session", autouse=True)
def _coverage_note(pytestconfig: pytest.Config) -> Iterator[None]:
    """At the end of the session: which implemented operations no exchange exercised."""
    yield
    if harbor_contract.load_contract() is None:
        return
    missed = sorted({op.operation_id for op in NAMED} - set(harbor_contract.CHECKED))
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and missed:
        reporter.write_sep("-", "Harbor contract coverage")
        reporter.write_line(f"no exchange of this run exercised: {', '.join(missed)}")


# --- static: declarations against swagger ----------------------------------------------


@pytest.mark.parametrize("op", OPERATIONS, ids=_op_id)
def test_operation_is_declared_as_harbor_declares_it(
    contract: HarborContract, op: Operation
) -> None:
    problems = contract.check_declaration(op.method, op.path, op.operation_id, op.query, op.status)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("op", [op for op in NAMED if op.response is not None], ids=_op_id)
def test_response_model_has_no_field_harbor_lacks(contract: HarborContract, op: Operation) -> None:
    assert op.operation_id is not None
    swagger_op = contract.by_id[op.operation_id]
    declared = swagger_op.responses.get(str(op.status), {}).get("schema")
    assert declared is not None, f"swagger declares no body for {op.operation_id} {op.status}"
    ours = _fields(TypeAdapter(op.response).json_schema(mode="serialization", by_alias=True))
    harbors = _fields(contract.to_json_schema(declared), contract.definitions)
    assert ours[0] == harbors[0], f"ours is {ours[0]}, Harbor's is {harbors[0]}"
    if harbors[1] is not None and ours[1] is not None:
        invented = sorted(ours[1] - harbors[1])
        assert not invented, f"{op.operation_id} answers fields Harbor lacks: {invented}"


def _fields(
    schema: dict[str, Any], definitions: dict[str, Any] | None = None
) -> tuple[str, set[str] | None]:
    """("object"|"array"|other, the object's (or item's) property names, when it has any)."""
    local = definitions if definitions is not None else schema.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = local[node["$ref"].rsplit("/", 1)[-1]]
        while "allOf" in node and len(node["allOf"]) == 1:
            node = resolve(node["allOf"][0])
        return node

    node = resolve(schema)
    kind = node.get("type")
    if kind == "array":
        node = resolve(node.get("items", {}))
    names = set(node["properties"]) if "properties" in node else None
    return (kind if isinstance(kind, str) else "other", names)


@pytest.mark.parametrize("op", OPERATIONS, ids=_op_id)
def test_router_resolves_the_template_as_swagger_does(
    contract: HarborContract, op: Operation
) -> None:
    """A sample path of each template reaches that operation, not a sibling (``/users/current``)."""
    sample = PARAM.sub("sample-value", op.path)
    scope = {"type": "http", "method": op.method, "path": API_PREFIX + sample, "root_path": ""}
    routes = [r for r in api_routes(OPERATIONS) if isinstance(r, ApiRoute)]
    first = next(r for r in routes if r.matches(scope)[0] == Match.FULL)
    assert first.operation is op, f"{sample} reaches {_op_id(first.operation)}"
    if op.operation_id is not None:
        swagger_op = contract.match(op.method, sample)
        assert swagger_op is not None and swagger_op.operation_id == op.operation_id


# --- driven: every generic GET answers admin with a valid body -------------------------


NOT_FOUND_WITHOUT_THE_FEATURE = frozenset({"getCert"})
"""GETs Harbor itself answers 404 where the feature is absent: ``/systeminfo/getcert``
when no CA root is configured (``has_ca_root`` false), as in Dockyard."""

NOT_FOUND_WITHOUT_A_SCANNER = frozenset({"getScannerOfProject"})
"""GETs that answer 404 while no scanner is registered: a project's scanner is its own
choice or the default, and with no registration there is neither (test_scanners.py drives
it with registrations)."""

REFUSED_WITHOUT_CONFIGURATION = frozenset({"searchLdapUser", "searchLdapGroup"})
"""GETs that need a setting the suite's app leaves empty: a directory search with no
``ldap_url`` (or, for groups, no ``groupname``/``groupdn``) is a 400 saying so
(test_ldap_signin.py and test_ldap_groups.py drive them against a directory)."""


async def test_every_get_operation_answers_admin_with_a_valid_body(
    contract: HarborContract, admin: httpx.AsyncClient
) -> None:
    gets = sorted(
        (op for op in NAMED if op.method == "GET"),
        key=lambda op: (op.path.count("{"), op.path),
    )
    answers: dict[str, Any] = {}
    not_driven: list[str] = []
    for op in gets:
        assert op.operation_id is not None
        path = _fill(op.path, answers)
        if path is None:
            not_driven.append(op.operation_id)
            continue
        swagger_op = contract.by_id[op.operation_id]
        params = {
            str(p["name"]): REQUIRED_QUERY_SAMPLES.get(str(p["name"]), "a")
            for p in swagger_op.parameters
            if p.get("in") == "query" and p.get("required")
        }
        response = await admin.get(API_PREFIX + path, params=params)
        if op.operation_id in NOT_FOUND_WITHOUT_THE_FEATURE:
            assert response.status_code == 404, f"{op.operation_id} {path}: {response.text}"
            continue
        if op.operation_id in NOT_FOUND_WITHOUT_A_SCANNER and not answers.get("/scanners"):
            assert response.status_code == 404, f"{op.operation_id} {path}: {response.text}"
            continue
        if op.operation_id in REFUSED_WITHOUT_CONFIGURATION:
            assert response.status_code == 400, f"{op.operation_id} {path}: {response.text}"
            continue
        assert response.status_code == 200, f"{op.operation_id} {path}: {response.text}"
        problems = contract.check_exchange(
            "GET",
            str(response.request.url.raw_path.decode("ascii")),
            response.request.url.params.multi_items(),
            response.status_code,
            response.headers,
            response.content,
        )
        assert not problems, harbor_contract.report("GET", path, 200, problems)
        if response.headers.get("content-type", "").startswith("application/json"):
            answers[op.path.rstrip("/")] = response.json()
    if not_driven:
        print(f"GET operations with no sample path (no listed item to use): {not_driven}")


def _fill(template: str, answers: dict[str, Any]) -> str | None:
    """``template`` with each parameter filled: fixed values, else from the parent listing.

    ``/users/{user_id}`` takes the first user ``/users`` listed (its ``user_id``, else
    its ``id``); ``/projects/{p}/metadatas/{meta_name}`` the first key of the map.
    """
    parts = template.split("/")
    segments = list(parts)
    for index, segment in enumerate(parts):
        match = PARAM.fullmatch(segment)
        if match is None:
            continue
        name = match.group(1)
        value = FIXED_PATH_VALUES.get(name)
        if value is None:
            value = _first_of(answers.get("/".join(parts[:index])), name)
        if value is None:
            return None
        segments[index] = value
    return "/".join(segments)


def _first_of(listing: Any, name: str) -> str | None:
    if isinstance(listing, dict) and listing and all(isinstance(v, str) for v in listing.values()):
        return str(next(iter(listing)))  # a map such as a project's metadata
    if isinstance(listing, list) and listing and isinstance(listing[0], dict):
        item = listing[0]
        if name == "repository_name" and isinstance(item.get("name"), str):
            # a Repository lists its full name; the path takes it without the project,
            # encoded twice over (Harbor's rule for names holding a slash)
            inner = item["name"].split("/", 1)[-1]
            return quote(quote(inner, safe=""), safe="")
        if name == "reference" and isinstance(item.get("digest"), str):
            return str(item["digest"])  # an Artifact is referenced by its digest
        value = item.get(name, item.get("id"))
        return None if value is None else str(value)
    return None
